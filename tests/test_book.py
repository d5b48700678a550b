"""The book, read like a reader would: built offline, opened in headless Chromium, formulas typeset by MathJax, images
that load, the results table present. Screenshots go to tests/artifacts/ (git-ignored)."""
import base64, functools, html.parser, http.server, io, os, shutil, socket, subprocess, sys, tempfile, threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / 'book' / '_build' / 'html'
ARTIFACTS = ROOT / 'tests' / 'artifacts'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or '/usr/bin/chromium'
PAGES = ['index.html', 'theory.html', 'results.html', 'splines.html', 'separation.html']


def _sources():
    "Files the book is built from: its chapters and config, the library notebooks and modules, stored results."
    yield from (p for p in (ROOT / 'book').rglob('*') if p.is_file() and '_build' not in p.parts and 'api' not in p.parts)
    yield from (ROOT / 'nbs').glob('[0-9]*.ipynb')
    yield from (ROOT / 'lolip_nb').glob('*.py')
    if (ROOT / 'results').exists(): yield from (p for p in (ROOT / 'results').rglob('*') if p.is_file())


@pytest.fixture(scope='module')
def site():
    "The built book (built here only when missing or older than its sources), served on 127.0.0.1."
    venv_bin = str(Path(sys.executable).parent)  # pytest may run as .venv/bin/python without the venv on PATH
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get('PATH', ''))
    assert shutil.which('jupyter-book', path=env['PATH']), "jupyter-book is missing: run 'make install'"
    index = HTML / 'index.html'
    newest = max((p.stat().st_mtime for p in _sources()), default=0)
    if not index.exists() or index.stat().st_mtime < newest:
        r = subprocess.run(['bash', 'book/build.sh'], cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
        assert r.returncode == 0, f"book build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown(); server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def _chromium(*args, timeout=120):
    "Run headless Chromium with a fresh profile and no network besides localhost; returns stdout."
    if not Path(CHROMIUM).exists(): pytest.skip('chromium is not installed')
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync',
               '--disable-dev-shm-usage', f'--user-data-dir={profile}', '--virtual-time-budget=10000', *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"chromium failed: {r.stderr[-2000:]}"
    return r.stdout


@functools.lru_cache(maxsize=None)
def _dom(url):
    return _chromium('--dump-dom', url)


class _Page(html.parser.HTMLParser):
    "Visible text, <img> sources, tables and MathJax containers of a rendered DOM."
    HIDDEN = {'script', 'style', 'noscript', 'template', 'mjx-container', 'mjx-assistive-mml', 'svg', 'head'}

    def __init__(self, dom):
        super().__init__(convert_charrefs=True)
        self.text, self.imgs, self.tables, self.mjx, self._hidden = [], [], 0, 0, []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'img' and a.get('src'): self.imgs.append(a['src'])
        if tag == 'table': self.tables += 1
        if tag == 'mjx-container': self.mjx += 1
        if tag in self.HIDDEN: self._hidden.append(tag)

    def handle_endtag(self, tag):
        if self._hidden and self._hidden[-1] == tag: self._hidden.pop()

    def handle_data(self, data):
        if not self._hidden: self.text.append(data)

    @property
    def visible(self): return ' '.join(self.text)


def _page(site, name):
    return _Page(_dom(f'{site}/{name}'))


@pytest.mark.parametrize('name', PAGES)
def test_page_loads(site, name):
    p = _page(site, name)
    assert len(p.visible) > 500, f"{name} rendered almost no text"
    assert 'Traceback' not in p.visible, f"{name} shows a Python traceback"


def test_index_is_the_introduction(site):
    assert 'local Lipschitzness' in _page(site, 'index.html').visible


@pytest.mark.parametrize('name', ['index.html', 'theory.html', 'splines.html'])
def test_formulas_are_typeset(site, name):
    p = _page(site, name)
    assert p.mjx > 5, f"{name}: MathJax did not typeset the formulas ({p.mjx} mjx-container elements)"
    for raw in ('\\(', '\\)', '\\[', '$$'):
        assert raw not in p.visible, f"{name}: raw TeX delimiter {raw!r} left in the visible text"


def test_mathjax_is_offline(site):
    for page in HTML.glob('*.html'):
        s = page.read_text()
        assert 'cdn.jsdelivr' not in s and 'mathjax@' not in s, f"{page.name} loads MathJax from a CDN"
    assert (HTML / '_static' / 'mathjax' / 'tex-chtml.js').stat().st_size > 0


def _image_bytes(site, name, src):
    "The bytes an <img src> on page `name` resolves to (data: URI or a file of the built site)."
    if src.startswith('data:'): return base64.b64decode(src.split(',', 1)[1])
    u = urlparse(src)
    if u.scheme in ('http', 'https'):
        assert src.startswith(site), f"{name}: image from outside the book: {src}"
        path = unquote(u.path).lstrip('/')
    else: path = (Path(name).parent / unquote(u.path)).as_posix()
    f = (HTML / path).resolve()
    assert f.is_file(), f"{name}: image {src} does not exist in the built book"
    return f.read_bytes()


@pytest.mark.parametrize('name', PAGES)
def test_images_load(site, name):
    from PIL import Image
    p = _page(site, name)
    for src in p.imgs:
        data = _image_bytes(site, name, src)
        assert len(data) > 0, f"{name}: empty image {src}"
        if src.endswith('.svg') or src.startswith('data:image/svg'): continue
        w, h = Image.open(io.BytesIO(data)).size
        assert w > 0 and h > 0, f"{name}: image {src} does not decode"


def test_figures_present(site):
    assert len(_page(site, 'theory.html').imgs) >= 1, "the theory illustration is missing"
    assert len(_page(site, 'splines.html').imgs) >= 1, "the spline fits are missing"


def test_results_table(site):
    p = _page(site, 'results.html')
    if any((ROOT / 'results').glob('*/*/result.json')):
        assert p.tables >= 2, "results exist but the results page shows no table"
    else:
        assert 'No results yet' in p.visible, "no results and no 'No results yet' note"
    assert p.tables >= 1, "the paper's reported numbers are missing"


def test_screenshots(site):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in PAGES:
        out = ARTIFACTS / f"book_{name.replace('.html', '')}.png"
        out.unlink(missing_ok=True)
        _chromium(f'--screenshot={out}', '--window-size=1280,2000', '--hide-scrollbars', f'{site}/{name}')
        assert out.exists() and out.stat().st_size > 10_000, f"no screenshot of {name}"
