"""Open an HTML file in a real headless browser (Chromium, through Qt WebEngine) and print,
as JSON, what it rendered: the DOM as the browser parsed it, computed styles and boxes.

Run as a script (``python tests/browser.py page.html``): Qt wants its own process, and the
browser must not share the test process's state. Offline: any request that leaves the page
is counted in ``requests`` (a self-contained page makes none).
"""

from __future__ import annotations

import json
import os
import sys

PROBE = r"""
(() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  const sections = [...document.querySelectorAll('section.record')].map((s) => {
    const sol = s.querySelector('.solution').cloneNode(true);
    sol.querySelectorAll('.badge').forEach((b) => b.remove());
    const svg = s.querySelector('svg.layer-curve');
    return {
      record: s.dataset.record,
      labelled: s.dataset.labelledStep,
      flagged: s.dataset.flaggedStep,
      solution_text: sol.textContent,
      steps: [...s.querySelectorAll('span.step')].map((el) => ({
        step: Number(el.dataset.step),
        p_wrong: el.dataset.pWrong,
        text: el.textContent,
        classes: [...el.classList],
        background: getComputedStyle(el).backgroundColor,
        box: box(el),
      })),
      curve: svg ? {
        box: box(svg),
        layers: [...svg.querySelectorAll('circle')].map((c) => Number(c.dataset.layer)),
        points: svg.querySelector('polyline').points.numberOfItems,
      } : null,
    };
  });
  return JSON.stringify({
    title: document.title,
    external: document.querySelectorAll('script, link, img, iframe, [src]').length,
    sections,
  });
})()
"""


def main(path: str) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # Headless in a container: no GPU, no sandbox (it needs user namespaces).
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox --disable-gpu")
    from PyQt6.QtCore import QTimer, QUrl
    from PyQt6.QtWebEngineCore import QWebEngineUrlRequestInterceptor
    from PyQt6.QtWebEngineWidgets import QWebEngineView
    from PyQt6.QtWidgets import QApplication

    app = QApplication([sys.argv[0]])
    requests: list[str] = []

    class Count(QWebEngineUrlRequestInterceptor):
        def interceptRequest(self, info):  # noqa: N802 (Qt's name)
            url = info.requestUrl().toString()
            if not url.startswith("file:"):
                requests.append(url)

    view = QWebEngineView()
    view.resize(1000, 800)
    interceptor = Count()
    view.page().profile().setUrlRequestInterceptor(interceptor)
    result: dict = {}

    def loaded(ok: bool) -> None:
        if not ok:
            result["error"] = "the page did not load"
            app.quit()
            return

        def got(value) -> None:
            result.update(json.loads(value))
            app.quit()

        view.page().runJavaScript(PROBE, got)

    view.loadFinished.connect(loaded)
    view.load(QUrl.fromLocalFile(os.path.abspath(path)))
    view.show()
    QTimer.singleShot(60_000, app.quit)
    app.exec()
    result["requests"] = requests
    print(json.dumps(result))
    return 0 if result.get("sections") is not None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
