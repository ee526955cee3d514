"""Notebook 09 as a user meets it: JupyterLab on 127.0.0.1, headless Chromium (Debian's chromium + chromium-driver,
driven by selenium), every cell run in the smoke profile, one slider of the coefficient explorer moved (the rendered
image must change), the plotly 3D mesh widget drawn (a WebGL canvas with pixels on it), an edit saved through
JupyterLab's own save path (it must reach the jupytext twin and survive ``make notebooks``), a screenshot saved, the
server shut down. Set ``DFMVR_SCREENSHOT_DIR`` to keep the screenshot (the committed one is
``results/figures/browser_notebook_09.png``)."""
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dfmvr_lib.run_notebooks import NOTEBOOK_DIR

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NOTEBOOK = NOTEBOOK_DIR / "09_reconstruct_your_photos.ipynb"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromium-driver (scripts/setup.sh installs them)"),
]
RUN_SECONDS = 600          # all cells of notebook 09 in the smoke profile, its parser and network trained first


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def smoke_copy(folder: Path) -> Path:
    """Notebook 09 with the smoke profile's parameters injected (as papermill does), outputs in ``folder``."""
    import papermill

    notebook = papermill.parameterize.parameterize_notebook(
        papermill.iorw.load_notebook_node(str(NOTEBOOK)),
        {"profile": "smoke", "results_dir": str(folder / "results"), "data_dir": str(folder / "data"),
         "photos_dir": ""})
    path = folder / NOTEBOOK.name
    path.write_text(json.dumps(notebook))
    shutil.copy(NOTEBOOK_DIR / "jupytext.toml", folder / "jupytext.toml")      # paired as in notebooks/
    return path


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with a free port and a token, serving ``tmp_path``; yields (url, token)."""
    port, token = free_port(), "browser-test-token"
    environment = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter_config"),
                   "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter_runtime")}
    settings = tmp_path / "lab_settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')   # no news prompt
    environment["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "lab_settings")
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--allow-root", "--LabApp.extension_manager=readonly",
         f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--ServerApp.port_retries=0"],
        stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
    assert server.returncode is not None


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--window-size=1500,1100", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


NOTEBOOK_STATE = """
if (!window.jupyterapp) { return null; }
const panel = window.jupyterapp.shell.currentWidget;
if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) { return null; }
const cells = panel.content.widgets.filter(c => c.model.type === 'code');
const errors = [];
for (const cell of cells) {
  const outputs = cell.model.outputs;
  for (let i = 0; i < outputs.length; i++) {
    const out = outputs.get(i);
    if (out.type === 'error') { errors.push(JSON.stringify(out.toJSON()).slice(0, 2000)); }
  }
}
return {kernel: panel.sessionContext.session.kernel ? panel.sessionContext.session.kernel.status : 'none',
        run: cells.filter(c => c.model.executionCount !== null).length, busy: cells.filter(c => c.promptNode &&
        c.promptNode.textContent.includes('*')).length, cells: cells.length, errors: errors};
"""


def wait_for(condition, seconds: float, what: str, pause: float = 1.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def explorer_image(driver) -> str:
    """The src of the coefficient explorer's rendered image (the last <img> in an ipywidgets output area)."""
    return driver.execute_script("""
const images = Array.from(document.querySelectorAll(
    '.jp-OutputArea .widget-output img, .jupyter-widgets-output-area img'));
return images.length ? images[images.length - 1].src : null;""")


def canvas_pixels(element) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")).astype(np.float32)


def test_notebook_09_runs_in_jupyterlab_and_its_widgets_respond(lab, browser, tmp_path):
    try:
        check_notebook_09(lab, browser, tmp_path)
    except BaseException:
        # what the browser showed when it went wrong, beside the kept screenshot
        failure = Path(os.environ.get("DFMVR_SCREENSHOT_DIR") or tmp_path) / "browser_notebook_09.failed.png"
        failure.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(failure))
        print(f"screenshot of the failure: {failure}")
        raise


def check_notebook_09(lab, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, token = lab
    path = smoke_copy(tmp_path)
    browser.get(f"{url}/lab/tree/{path.name}?token={token}")
    wait_for(lambda: browser.execute_script(NOTEBOOK_STATE), 120, "the notebook and its kernel")
    wait_for(lambda: browser.execute_script(NOTEBOOK_STATE)["kernel"] == "idle", 120, "an idle kernel")
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    wait_for(lambda: browser.execute_script(NOTEBOOK_STATE)["busy"] > 0, 60, "the first cell to start", 0.2)

    def finished():
        state = browser.execute_script(NOTEBOOK_STATE)
        assert not state["errors"], f"a cell failed in the browser: {state['errors']}"
        return state["kernel"] == "idle" and state["busy"] == 0 and state["run"] == state["cells"] and state
    state = wait_for(finished, RUN_SECONDS, "every cell to run", 2.0)
    assert state["run"] == state["cells"] > 5

    # the 3D viewer: plotly's FigureWidget draws its mesh on a WebGL canvas
    plot = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"), 60, "the plotly 3D widget")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", plot[0])
    canvas = wait_for(lambda: plot[0].find_elements(By.CSS_SELECTOR, "canvas"), 30, "the widget's WebGL canvas")[0]
    time.sleep(2)
    pixels = canvas_pixels(canvas)
    assert pixels.std(axis=(0, 1)).max() > 10, "the 3D widget's canvas is blank"

    # the coefficient explorer: moving a slider re-renders the face
    before = wait_for(lambda: explorer_image(browser), 60, "the explorer's image")
    handle = browser.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    handle.click()
    for _ in range(8):
        handle.send_keys(Keys.ARROW_RIGHT)
    after = wait_for(lambda: (image := explorer_image(browser)) != before and image, 60,
                     "the explorer's image to change after the slider moved")
    assert base64.b64decode(after.split(",", 1)[1]) != base64.b64decode(before.split(",", 1)[1])

    # an edit saved through JupyterLab's own save path reaches the text twin, survives `make notebooks` (which
    # strips the outputs of the run above) and is in the .ipynb that papermill runs
    marker = 'print("edited in JupyterLab")'
    browser.execute_script(f"""
const panel = window.jupyterapp.shell.currentWidget;
panel.content.widgets.filter(c => c.model.type === 'code').pop().model.sharedModel.setSource({json.dumps(marker)});
return window.jupyterapp.commands.execute('docmanager:save');""")
    twin = path.with_suffix(".py")
    wait_for(lambda: twin.is_file() and marker in twin.read_text(), 30, "the save to reach the .py twin")
    subprocess.run(["make", "-s", "-C", str(NOTEBOOK_DIR.parent), "notebooks", f"NOTEBOOKS={path}",
                    f"PY={sys.executable}"], check=True)
    saved = json.loads(path.read_text())
    code = [c for c in saved["cells"] if c["cell_type"] == "code"]
    assert "".join(code[-1]["source"]) == marker and not any(c["outputs"] for c in code)
    assert marker in twin.read_text()

    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", plot[0])
    time.sleep(1)
    screenshot = tmp_path / "browser_notebook_09.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("DFMVR_SCREENSHOT_DIR"):
        keep = Path(os.environ["DFMVR_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, keep / screenshot.name)
