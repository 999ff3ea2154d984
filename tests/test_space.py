"""The demo Space (``space/app.py``) over the shipped ``scientific-tiger``: its functions, and the page in a browser.

The app's logic is plain functions over the real checkpoint's pipeline: search finds real titles, adding builds
the history, and the recommendations are ``sidrec.Recommender``'s items and scores. The Space folder uploaded
alone (no sidrec, no clone) finds its model through its README's ``models:`` on the local Hub server. The page
itself runs in headless Chromium from the system's packages, driven by Selenium through the system's
chromedriver (nothing downloads a browser): it types two real titles, adds both items, sets top-k and reads the
recommendations off the page. Without a browser or driver that test skips and says why
(``scripts/install_browser.sh``, run by ``make test``, installs them where the machine allows).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
from collections import Counter

import pytest
import tomllib
import torch
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from sidrec.checkpoints import checkpoint_path
from sidrec.recommender import Recommender

from .conftest import ROOT

SPACE = ROOT / "space"
CHECKPOINT = checkpoint_path("scientific-tiger")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium-browser/chromedriver")  # Debian; Ubuntu


def load_app():
    """``space/app.py`` as a module (a Space's folder is no package)."""
    spec = importlib.util.spec_from_file_location("sidrec_space_app", SPACE / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


app = load_app()


@pytest.fixture(scope="module")
def pipe():
    return app.load_pipeline(str(CHECKPOINT))


@pytest.fixture(scope="module")
def catalogue(pipe):
    return app.Catalogue.of(pipe)


@pytest.fixture(scope="module")
def recommender() -> Recommender:
    return Recommender.from_pretrained("scientific-tiger")


@pytest.fixture(scope="module")
def two_items(scientific, catalogue) -> list[str]:
    """The last two items of the first real test user whose two titles each name one item only (oldest first)."""
    shared = {title for title, count in Counter(catalogue.titles).items() if count > 1}
    test = scientific.splits["test"]
    for row in range(len(test)):
        items = [scientific.item_ids[index] for index in test[row]["history"][-2:]]
        titles = [catalogue.title(item) for item in items]
        if len(set(items)) == 2 and all(title and title not in shared for title in titles):
            return items
    raise AssertionError("no test user with two uniquely titled items")


def as_dicts(rows) -> list[dict]:
    return [{"item_id": row.item_id, "title": row.title, "score": row.score} for row in rows]


# ----- the app's functions -----------------------------------------------------------------------------------------


def test_search_finds_the_items_of_a_real_title_best_first(catalogue, two_items):
    for item in two_items:
        title = catalogue.title(item)
        assert app.search(catalogue, title)[0] == (f"{title} [{item}]", item)
        words = title.lower().split()[:3]  # any case, a few words: the item is among the matches
        matches = app.search(catalogue, " ".join(reversed(words)))
        assert item in [item_id for _, item_id in matches]
        assert all(all(word in catalogue.title(item_id).lower() for word in words) for _, item_id in matches)
    assert app.search(catalogue, "   ") == []
    assert app.search(catalogue, "zzzz no such gadget") == []
    assert len(app.search(catalogue, "a")) == app.MAX_MATCHES
    # a title several items share lists each of them first, told apart by the id in the label
    title, count = Counter(catalogue.titles).most_common(1)[0]
    assert count > 1
    first = app.search(catalogue, title)[:count]
    assert sorted(item for _, item in first) == sorted(
        i for i, t in zip(catalogue.item_ids, catalogue.titles) if t == title
    )
    assert len({label for label, _ in first}) == count


def test_adding_builds_the_history_and_refuses_what_it_cannot_add(catalogue, two_items):
    first, second = two_items
    history = app.add_to_history(catalogue, [], first)
    assert history == [first]
    longer = app.add_to_history(catalogue, history, second)
    assert longer == [first, second] and history == [first]  # a new list; the old one unchanged
    with pytest.raises(ValueError, match="choose an item first"):
        app.add_to_history(catalogue, longer, None)
    with pytest.raises(ValueError, match=r"item 'nope' is not in this model's catalogue of 4344 items"):
        app.add_to_history(catalogue, longer, "nope")
    with pytest.raises(ValueError, match=r"is already in the history; pick another item"):
        app.add_to_history(catalogue, longer, first)
    page = app.render_history(catalogue, longer)
    assert page.index(f'data-item-id="{first}"') < page.index(f'data-item-id="{second}"')
    assert "is empty" in app.render_history(catalogue, [])


def test_recommendations_are_the_recommenders_items_and_scores(pipe, recommender, two_items):
    assert app.max_top_k(pipe) == recommender.model.generation_config.num_beams == 20
    for top_k in (1, 5.0, 20):  # the slider may send a float
        got = app.recommend(pipe, two_items, top_k)
        assert got == as_dicts(recommender.recommend(two_items, top_k=int(top_k)))
        assert len(got) == int(top_k)
    assert app.recommend(pipe, [], 5) == []
    with pytest.raises(ValueError, match=r"top_k=21 exceeds num_beams=20"):
        app.recommend(pipe, two_items, 21)
    with pytest.raises(ValueError, match=r"top_k"):
        app.recommend(pipe, two_items, 2.5)
    rows = app.recommend(pipe, two_items, 3)
    page = app.render_recommendations(rows)
    for row in rows:
        assert f'data-item-id="{row["item_id"]}"' in page and f"{row['score']:.3f}" in page
    assert "press Recommend" in app.render_recommendations([])


def test_titles_are_escaped_on_the_page():
    catalogue = app.Catalogue(["1"], ['Tape <b>"wide"</b> & strong'])
    assert "Tape &lt;b&gt;&quot;wide&quot;&lt;/b&gt; &amp; strong" in app.render_history(catalogue, ["1"])
    row = {"item_id": "1", "title": "<script>", "score": -1.0}
    assert "<script>" not in app.render_recommendations([row])


def test_find_model_takes_the_given_model_then_the_bundled_then_the_shipped_one(tmp_path):
    assert app.find_model(environ={}) == str(CHECKPOINT)
    assert app.find_model(environ={app.MODEL_ENV: "scientific-tiger"}) == str(CHECKPOINT)
    assert app.find_model(environ={app.MODEL_ENV: "someone/their-model"}) == "someone/their-model"
    assert app.find_model("someone/cli-model", environ={app.MODEL_ENV: "someone/their-model"}) == "someone/cli-model"
    assert app.find_model(environ={app.MODEL_ENV: str(tmp_path)}) == str(tmp_path)
    space = tmp_path / "space"
    (space / app.BUNDLED_MODEL).mkdir(parents=True)
    (space / app.BUNDLED_MODEL / "config.json").write_text("{}")
    assert app.find_model(environ={}, here=space) == str(space / app.BUNDLED_MODEL)


def test_the_space_readme_header_is_a_gradio_space_of_this_app():
    header = yaml.safe_load((SPACE / "README.md").read_text().split("---")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py" and (SPACE / header["app_file"]).is_file()
    assert header["license"] == "apache-2.0"
    assert app.models_in_readme(SPACE / "README.md") == header["models"] == ["sidrec/scientific-tiger"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    gradio = next(Requirement(line) for line in extras["space"] if Requirement(line).name == "gradio")
    assert Version(str(header["sdk_version"])) in gradio.specifier  # the Space runs the Gradio the extra installs
    assert any(Requirement(line).name == "gradio" for line in extras["dev"])  # so `make test` has it
    needed = {
        Requirement(line).name
        for line in (SPACE / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    assert {"torch", "transformers"} <= needed and "sidrec" not in needed


@pytest.mark.slow
def test_the_space_folder_uploaded_alone_serves_the_model_its_readme_names(
    hub_server, recommender, two_items, tmp_path
):
    """What `hf upload <you>/<space> space/ --repo-type space` publishes: app.py without sidrec or a clone finds
    the checkpoint by the Hub id under its README's models:, and answers as the Recommender does."""
    pytest.importorskip("gradio", reason="no gradio: pip install -e '.[dev]' (or '.[space]')")
    from huggingface_hub import HfApi
    from huggingface_hub.repocard import metadata_load, metadata_save

    repo_id = f"{hub_server.user}/scientific-tiger"
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(CHECKPOINT), repo_id=repo_id)
    space = tmp_path / "space"
    shutil.copytree(SPACE, space, ignore=shutil.ignore_patterns("__pycache__"))
    header = metadata_load(space / "README.md")
    metadata_save(space / "README.md", {**header, "models": [repo_id]})
    script = f"""
import json, sys
sys.modules["sidrec"] = None  # make `import sidrec` fail, as on a Space
sys.path.insert(0, {str(space)!r})
import torch
torch.set_num_threads({torch.get_num_threads()})  # this process's: the same sums in the same order, the same scores
import app
from pathlib import Path
try:
    app.find_model(environ={{}}, here=Path({str(tmp_path / "bare")!r}))  # no model/, no README: nothing to serve
    raise SystemExit("found a model where there is none")
except FileNotFoundError as error:
    nothing = str(error)
model = app.find_model(environ={{}})
pipe = app.load_pipeline(model)
assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
app.build_demo(pipe, model)
print(json.dumps({{"model": model, "rows": app.recommend(pipe, {two_items!r}, 5), "nothing": nothing}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got.pop("nothing").startswith("no model to serve: no --model or $SIDREC_MODEL, no checkpoint folder at")
    assert got == {"model": repo_id, "rows": as_dicts(recommender.recommend(two_items, top_k=5))}


# ----- the page in a real browser ----------------------------------------------------------------------------------


def system_browser() -> tuple[str, str]:
    """(Chromium, chromedriver) installed on this machine, or skip saying which is missing and how to get it."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = next((found for name in DRIVERS if (found := shutil.which(name))), None)
    if browser is None or driver is None:
        missing = " and ".join(
            what for what, found in (("a Chromium browser", browser), ("chromedriver", driver)) if found is None
        )
        pytest.skip(
            f"no chromium/chromedriver: {missing} not found (looked for {', '.join(BROWSERS + DRIVERS)}); "
            "`make test` installs Debian's chromium and chromium-driver where it runs as root with apt-get "
            "(scripts/install_browser.sh)"
        )
    return browser, driver


@pytest.fixture
def chromium() -> tuple[str, str]:
    """(browser, driver) of the system's Chromium, and Selenium; skips before the app starts when one is missing."""
    found = system_browser()
    pytest.importorskip("selenium", reason="no selenium: pip install -e '.[dev]'")
    return found


@pytest.fixture
def page_url(chromium, pipe):
    """The app on a free local port, served from a background thread for one test."""
    pytest.importorskip("gradio", reason="no gradio: pip install -e '.[dev]' (or '.[space]')")
    demo = app.build_demo(pipe)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, share=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)")  # Gradio's queue vs pandas 3
def test_the_page_in_headless_chromium_recommends_what_the_recommender_does(
    chromium, page_url, catalogue, recommender, two_items
):
    browser, driver_path = chromium
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces for Chromium's sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # the page must work offline: only the app
    ):
        options.add_argument(argument)
    top_k = 5
    want = recommender.recommend(two_items, top_k=top_k)

    def rows(page, where: str) -> list[tuple[str, ...]]:
        found = page.find_elements(By.CSS_SELECTOR, f"#{where} tr[data-item-id]")
        return [
            (row.get_attribute("data-item-id"), *(cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")))
            for row in found
        ]

    page = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        page.get(page_url)
        wait = WebDriverWait(page, 30, ignored_exceptions=(StaleElementReferenceException,))
        search = wait.until(shown.element_to_be_clickable((By.CSS_SELECTOR, "#search textarea, #search input")))
        for count, item in enumerate(two_items, start=1):
            search.clear()
            search.send_keys(catalogue.title(item))
            matches = page.find_element(By.CSS_SELECTOR, "#matches input")
            label, added = catalogue.label(item), two_items[:count]
            wait.until(lambda _, matches=matches, label=label: matches.get_attribute("value") == label)
            page.find_element(By.ID, "add").click()
            wait.until(lambda current, added=added: [row[0] for row in rows(current, "history")] == added)
        number = page.find_element(By.CSS_SELECTOR, "#top-k input[type=number]")
        number.send_keys(Keys.CONTROL, "a")
        number.send_keys(str(top_k), Keys.TAB)
        wait.until(
            lambda current: (
                current.find_element(By.CSS_SELECTOR, "#top-k input[type=range]").get_attribute("value") == str(top_k)
            )
        )
        page.find_element(By.ID, "recommend").click()
        wait.until(lambda current: len(rows(current, "recommendations")) == top_k)
        shown_rows = rows(page, "recommendations")
        assert [(item_id, title) for item_id, _, title, _, _ in shown_rows] == [
            (row.item_id, " ".join(row.title.split())) for row in want
        ]
        assert [rank for _, rank, _, _, _ in shown_rows] == [str(rank) for rank in range(1, top_k + 1)]
        assert [score for *_, score in shown_rows] == [f"{row.score:.3f}" for row in want]
        history = rows(page, "history")
        assert [(item_id, title) for item_id, _, title, _ in history] == [
            (item, " ".join(catalogue.title(item).split())) for item in two_items
        ]
        page.find_element(By.ID, "clear").click()
        wait.until(lambda current: not rows(current, "history") and not rows(current, "recommendations"))
    finally:
        page.quit()
