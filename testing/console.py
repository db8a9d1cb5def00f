"""The example deployment on private ports, run by the real ``yujing run``, and a headless Chromium to look at it.

    cfg_dir = relocated_example(tmp_path)           # config/zhongxian with free ports and its own data dir
    with yujing_run(cfg_dir, duration_s=240) as demo:  # the command itself, in a child process
        demo.console                                 # http://127.0.0.1:<port>/ as the command printed it
    with chromium() as browser: ...                  # Selenium on Debian's chromium + chromium-driver

Used by tests/test_console_*.py and bench/console.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simulators.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "zhongxian"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CONSOLE_LINE = re.compile(r"控制台 console: (\S+)")


# An operator and a viewer beside the example's demo account, for the tests of writes and of refusals
PASSWORDS = {"li": "li-operator-password", "wang": "wang-viewer-password"}


def example_with_operators(dst: Path) -> Path:
    """:func:`relocated_example` with the accounts of :data:`PASSWORDS`: ``li`` (operator), ``wang`` (viewer)."""
    from duty.accounts import hash_password

    dep = yaml.safe_load((EXAMPLE / "deployment.yaml").read_text(encoding="utf-8"))
    accounts = dep["duty"]["accounts"] + [
        {"user": "li", "role": "operator", "password_hash": hash_password(PASSWORDS["li"])},
        {"user": "wang", "role": "viewer", "password_hash": hash_password(PASSWORDS["wang"])}]
    return relocated_example(dst, extra={"duty": {"accounts": accounts}})


def relocated_example(dst: Path, src: Path = EXAMPLE, *, extra: dict[str, Any] | None = None) -> Path:
    """A copy of ``src`` whose every port is a free one of ours and whose state lives under ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_dir():
            shutil.copytree(p, dst / p.name, dirs_exist_ok=True)
        elif p.suffix in (".yaml", ".yml", ".csv", ".geojson"):
            shutil.copy(p, dst / p.name)
    dep_path = dst / "deployment.yaml"
    dep = yaml.safe_load(dep_path.read_text(encoding="utf-8"))
    twilio = free_port()
    dep["deployment"]["data_dir"] = str(dst / "var")
    dep["mqtt"]["port"] = free_port()
    dep["alerts"]["twilio"]["base_url"] = f"http://127.0.0.1:{twilio}"
    dep["alerts"]["webhook"]["port"] = free_port()
    dep["simulation"]["twilio_port"] = twilio
    dep.setdefault("duty", {})["port"] = free_port()  # the duty office's API, and the console with it
    for k, v in (extra or {}).items():
        dep[k] = {**dep.get(k, {}), **v} if isinstance(v, dict) else v
    dep_path.write_text(yaml.safe_dump(dep, allow_unicode=True, sort_keys=False), encoding="utf-8")
    gw_path = dst / "gateways.yaml"
    if gw_path.exists():
        gws = yaml.safe_load(gw_path.read_text(encoding="utf-8"))
        ports: dict[int, int] = {}
        for gw in gws["gateways"]:
            for d in gw["devices"]:
                if "port" in d and isinstance(d["port"], int):
                    d["port"] = ports.setdefault(d["port"], free_port())
        gw_path.write_text(yaml.safe_dump(gws, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dst


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    console: str = ""
    lines: list[str] = field(default_factory=list)
    _seen: threading.Condition = field(default_factory=threading.Condition)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                m = CONSOLE_LINE.search(line)
                if m and not self.console:
                    self.console = m.group(1)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for_line(self, pattern: str, timeout_s: float) -> str:
        """The first output line matching ``pattern`` (regex), waiting up to ``timeout_s``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self._seen:
            while True:
                hit = next((ln for ln in self.lines if rx.search(ln)), None)
                if hit is not None:
                    return hit
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s; last lines:\n{tail}")
                self._seen.wait(min(left, 1.0))


@contextlib.contextmanager
def yujing_run(cfg_dir: Path, *, duration_s: float = 300, args: tuple[str, ...] = ("run",),
               extra: tuple[str, ...] = ()) -> Iterator[Demo]:
    """``yujing run CFG`` (or another subcommand) as a child process, until the console says its address."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1"}
    env.pop("TWILIO_AUTH_TOKEN", None)  # the demo's stand-in lends its own token only when none is set
    proc = subprocess.Popen([sys.executable, "-m", "yujing", *args, str(cfg_dir), "--duration", str(duration_s),
                             *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", start_new_session=True)
    demo = Demo(proc)
    pump = threading.Thread(target=demo._pump, daemon=True)
    pump.start()
    try:
        demo.wait_for_line(CONSOLE_LINE.pattern, 60)
        yield demo
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(45)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        pump.join(10)


@contextlib.contextmanager
def chromium(width: int = 1600, height: int = 1000) -> Iterator[Any]:
    """Headless Chromium driven by Selenium through Debian's chromedriver (no browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--lang=zh-CN", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: Any, console: str, user: str, password: str, then: str = "") -> None:
    """Through the login page, as a person would: any page sends a stranger there first."""
    from selenium.webdriver.common.by import By

    driver.get(console + then.lstrip("/"))
    wait_js(driver, "return location.pathname == '/login' && document.getElementById('login')", 20, "the login page")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-go").click()
    wait_js(driver, "return location.pathname != '/login' && document.getElementById('who')", 20, "logged in")


def wait_js(driver: Any, script: str, timeout_s: float, what: str) -> Any:
    """Poll ``return <expr>`` in the page until it is truthy (the browser is the event source here)."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(lambda d: d.execute_script(script))
    except Exception as exc:
        raise AssertionError(f"{what}: not within {timeout_s} s ({type(exc).__name__})") from None


def click(driver: Any, css: str, timeout_s: float, what: str) -> None:
    """Click the element ``css`` names in a list the page redraws as news comes: an element found just before
    a redraw is stale by the click, so find it again (a person clicks again too) until the click lands."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def landed(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    try:
        WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(landed)
    except Exception as exc:
        raise AssertionError(f"{what}: not clicked within {timeout_s} s ({type(exc).__name__})") from None


def page_errors(driver: Any) -> list[str]:
    """Errors the page's scripts raised (favicon misses are not the page's fault)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "favicon" not in e["message"]]
