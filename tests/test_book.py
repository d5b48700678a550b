"""The book, read like a reader would: built offline, opened in headless Chromium, formulas typeset by MathJax, images
that load, the results table present; every page read at a phone's width (390 px) with no raw TeX, no page wider than
the screen, numbered figure captions, distinct titles, no path of the build machine, and citations that resolve.
The checks are generic: they hold for any content of results/. Screenshots go to tests/artifacts/ (git-ignored)."""
import base64, functools, html.parser, http.server, io, json, os, re, shutil, socket, subprocess, sys, tempfile, threading
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


# `probe.html?page=<page>&width=<px>` (served by the test server, not part of the book) shows the page in an iframe
# of that width: a real phone-sized viewport whatever the smallest window headless Chromium allows. Once the page
# has settled (MathJax included) it records the viewport width, the document's width and the article elements that
# stick out of the viewport without being inside a box that scrolls, as JSON in <body data-probe>, and copies the
# page's rendered body into its own, so that --dump-dom returns both.
PROBE = """<!doctype html><html><head><title>probe</title></head><body>
<iframe id="page" style="width:%(width)dpx;height:844px;border:0"></iframe>
<script>
const frame = document.getElementById('page');
frame.addEventListener('load', () => setTimeout(() => {
  const doc = frame.contentDocument, win = frame.contentWindow;
  const W = doc.documentElement.clientWidth;
  const scroll = Math.max(doc.documentElement.scrollWidth, doc.body.scrollWidth);
  const wide = [];
  doc.querySelectorAll(scroll > W ? 'body *' : '.bd-article *').forEach(el => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= W + 1) return;
    for (let a = el.parentElement; a && a !== doc.body; a = a.parentElement) {
      const o = win.getComputedStyle(a).overflowX;
      if ((o === 'auto' || o === 'scroll' || o === 'hidden') && a.getBoundingClientRect().right <= W + 1) return;
    }
    wide.push(el.tagName.toLowerCase() + '.' + String(el.className).split(' ')[0] + ' right=' + Math.round(r.right) +
              ' "' + el.textContent.trim().slice(0, 50) + '"');
  });
  if (scroll > W && !wide.length) {          // text that runs past its box (a long URL) is a text node, not an element
    const walk = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n && wide.length < 8; n = walk.nextNode()) {
      const range = doc.createRange(); range.selectNodeContents(n);
      const r = range.getBoundingClientRect();
      if (r.width > 0 && r.right > W + 1) wide.push('text in ' + n.parentElement.tagName.toLowerCase() + '.' +
        String(n.parentElement.className).split(' ')[0] + ' right=' + Math.round(r.right) + ' "' + n.textContent.trim().slice(0, 50) + '"');
    }
  }
  const copy = document.createElement('div');
  copy.innerHTML = doc.body.innerHTML;
  document.body.appendChild(copy);
  document.body.setAttribute('data-probe', JSON.stringify({viewport: W, document: scroll, wide: wide.slice(0, 8)}));
}, 6000));
frame.src = %(page)s;
</script></body></html>"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

    def do_GET(self):
        u = urlparse(self.path)
        if u.path != '/probe.html': return super().do_GET()
        q = dict(p.split('=', 1) for p in u.query.split('&') if '=' in p)
        body = (PROBE % dict(width=int(q.get('width', 390)), page=json.dumps('/' + unquote(q['page'])))).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
    "Visible text (and the part of it outside code), <img> sources, tables, MathJax containers and <title> of a DOM."
    HIDDEN = {'script', 'style', 'noscript', 'template', 'mjx-container', 'mjx-assistive-mml', 'svg', 'head'}
    CODE = {'pre', 'code', 'kbd', 'samp'}
    VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'}

    def __init__(self, dom):
        super().__init__(convert_charrefs=True)
        self.text, self.prose, self.imgs, self.tables, self.mjx, self._hidden, self._code = [], [], [], 0, 0, [], 0
        self.title, self._in_title, self.probe = '', False, None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'img' and a.get('src'): self.imgs.append(a['src'])
        if tag == 'table': self.tables += 1
        if tag == 'mjx-container': self.mjx += 1
        if tag == 'title': self._in_title = True
        if tag == 'body' and a.get('data-probe'): self.probe = json.loads(a['data-probe'])
        if tag in self.HIDDEN: self._hidden.append(tag)
        if tag in self.CODE: self._code += 1

    def handle_endtag(self, tag):
        if self._hidden and self._hidden[-1] == tag: self._hidden.pop()
        if tag in self.CODE and self._code: self._code -= 1
        if tag == 'title': self._in_title = False

    def handle_data(self, data):
        if self._in_title: self.title += data
        if not self._hidden:
            self.text.append(data)
            if not self._code: self.prose.append(data)

    @property
    def visible(self): return ' '.join(self.text)

    @property
    def visible_prose(self): return ' '.join(self.prose)


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


def _all_pages():
    "Every page of the built book, as paths relative to the site root (search page left out)."
    skip = {'_static', '_sources', '_images'}
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob('*.html')
                  if not skip & set(p.relative_to(HTML).parts) and p.name != 'search.html'
                  and 'http-equiv="Refresh"' not in p.read_text()[:2000])   # index.html may only redirect


def _first(pattern):
    "The first built page matching a glob (an API page, a run page), or None."
    return next((p for p in _all_pages() if Path(p).match(pattern) and not p.endswith('index.html')), None)


def test_screenshots(site):
    "Screenshots to look at: chapters, one API page and one run page at 1280 px, and pages at a phone's 390 px."
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wide = PAGES + [p for p in (_first('api/nbs/*.html'), _first('api/runs/*.html')) if p]
    shots = [(name, 1280, 2000) for name in wide] + [(name, 390, 2400) for name in ('index.html', 'separation.html',
                                                                                      'theory.html')]
    for name, w, h in shots:
        out = ARTIFACTS / f"book_{name.replace('.html', '').replace('/', '_')}{'' if w == 1280 else f'_{w}'}.png"
        out.unlink(missing_ok=True)
        _chromium(f'--screenshot={out}', f'--window-size={w},{h}', '--hide-scrollbars', f'{site}/{name}')
        assert out.exists() and out.stat().st_size > 10_000, f"no screenshot of {name} at {w} px"


# ---------------------------------------------------------------- every page, rendered at a phone's width

@functools.lru_cache(maxsize=None)
def _phone(site, name):
    "A page rendered by Chromium at 390 x 844 px, with the width probe's measurements."
    return _Page(_chromium('--dump-dom', '--window-size=600,900', f'{site}/probe.html?page={name}&width=390'))


def test_phone_pages(site):
    """At 390 px, on every page: no raw TeX left in the text outside code (MathJax typeset every formula; no `$...$`
    that MyST did not read as math) and no MyST markup that was not parsed (a directive, role or glue), and nothing
    wider than the screen (wide tables, formulas and code scroll inside their own box)."""
    problems = []
    for name in _all_pages():
        p = _phone(site, name)
        prose = p.visible_prose
        for raw in ('$', '\\(', '\\)', '\\[', '\\]', ':name:', '```{', ':::{', '{glue', '{cite', '{eq}', '{numref}'):
            if raw in prose:
                i = prose.index(raw)
                problems.append(f"{name}: raw {raw!r} in the text: ...{prose[max(0, i - 60):i + 60]!r}...")
                break
        if p.probe is None:
            problems.append(f"{name}: the width probe did not run"); continue
        if p.probe['document'] > p.probe['viewport'] or p.probe['wide']:
            problems.append(f"{name}: {p.probe['document']} px wide at a {p.probe['viewport']} px viewport; "
                            f"sticking out: {p.probe['wide']}")
    assert not problems, '\n'.join(problems)


# ---------------------------------------------------------------- every page, as built

class _Static(html.parser.HTMLParser):
    "Structure of a built page: <title>, ids, links, article images with their figure, figures with a numbered caption."
    VOID = _Page.VOID

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.title, self.ids, self.links, self.imgs, self.figures = '', set(), [], [], {}
        self._stack, self._in_title, self._fig = [], False, []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        cls = (a.get('class') or '').split()
        in_article = any(t == 'article' for t, _ in self._stack) or 'bd-article' in cls
        if tag == 'figure':
            self.figures[len(self.figures)] = False; self._fig.append(len(self.figures) - 1)
        if tag == 'img' and in_article: self.imgs.append((a.get('src', ''), self._fig[-1] if self._fig else None))
        if 'caption-number' in cls and self._fig: self.figures[self._fig[-1]] = True
        if tag == 'title': self._in_title = True
        if tag not in self.VOID: self._stack.append((tag, cls))

    def handle_endtag(self, tag):
        if tag == 'title': self._in_title = False
        if tag == 'figure' and self._fig: self._fig.pop()
        while self._stack:
            t, _ = self._stack.pop()
            if t == tag: break

    def handle_data(self, data):
        if self._in_title: self.title += data


@functools.lru_cache(maxsize=None)
def _static(name):
    return _Static((HTML / name).read_text())


def test_figures_have_numbered_captions(site):
    "Every image in a page's text is a figure with a numbered caption ('Fig. 2.1'), and every figure has one."
    problems = []
    for name in _all_pages():
        s = _static(name)
        problems += [f"{name}: image {src[:80]} is not in a figure" for src, fig in s.imgs if fig is None]
        problems += [f"{name}: figure {i + 1} has no numbered caption" for i, ok in s.figures.items() if not ok]
    assert not problems, '\n'.join(problems)


def test_titles_are_distinct(site):
    seen = {}
    for name in _all_pages():
        seen.setdefault(' '.join(_static(name).title.split()), []).append(name)
    shared = {t: n for t, n in seen.items() if len(n) > 1}
    assert not shared, f"pages sharing a title: {shared}"


def test_no_path_of_the_build_machine(site):
    "No page shows where the book was built: the home folder, a site-packages folder or the checkout's path."
    home = re.escape(str(Path.home()))
    pattern = re.compile(rf'(?<![\w.]){home}/|/home/[\w.-]+/|/Users/[\w.-]+/|site-packages|{re.escape(str(ROOT))}')
    problems = []
    for name in _all_pages():
        text = (HTML / name).read_text()
        if (m := pattern.search(text)):
            problems.append(f"{name}: ...{text[max(0, m.start() - 80):m.end() + 40]!r}...")
    assert not problems, '\n'.join(problems)


def test_no_reference_to_private_notes(site):
    "The book cites public sources only: no page sends readers to the project's own notes, which they do not have."
    pattern = re.compile(r'PAPER(-SOURCES)?\.md|GPU-NOTES|ORIGINAL-CODE\.md|shared/reference')
    problems = [f"{name}: ...{m.group(0)}..." for name in _all_pages()
                if (m := pattern.search((HTML / name).read_text()))]
    assert not problems, '\n'.join(problems)


def test_citations_resolve(site):
    """Every citation links to an entry of the bibliography page, which lists every entry of book/references.bib;
    no citation is left as raw text."""
    bib_page = 'bibliography.html'
    assert (HTML / bib_page).exists(), "no bibliography page"
    entries = (HTML / bib_page).read_text().count('role="doc-biblioentry"')
    keys = re.findall(r'^@\w+\{([^,]+),', (ROOT / 'book' / 'references.bib').read_text(), re.M)
    assert entries >= len(keys) > 0, f"the bibliography lists {entries} entries for {len(keys)} keys in references.bib"
    targets, problems, cited = _static(bib_page).ids, [], 0
    for name in _all_pages():
        base = Path(name).parent
        for href in _static(name).links:
            u = urlparse(href)
            if u.scheme or not u.fragment: continue
            page = (base / u.path).as_posix() if u.path else name
            page = os.path.normpath(page)
            if page == bib_page:
                cited += 1
                if u.fragment not in targets: problems.append(f"{name}: citation {href} has no entry")
        text = (HTML / name).read_text()
        if re.search(r'\{cite(:[pt])?\}', text): problems.append(f"{name}: a citation role was left as raw text")
    assert cited > 0, "no page cites anything"
    assert not problems, '\n'.join(problems)


def test_no_empty_index_and_one_search_box(site):
    "No empty general index; one search field (in the sidebar, not a second one in a top bar); the repository button."
    assert not (HTML / 'genindex.html').exists(), "an empty genindex.html is built"
    index = (HTML / _root_page()).read_text()
    assert 'genindex.html' not in index, "a link to the (empty) general index"
    assert index.count('search-button-field') == 1, "more than one search field"
    assert 'github.com/lolip-nb/lolip_nb' in index, "no repository button"


def _root_page():
    "The first page: index.html, or the page it redirects to."
    text = (HTML / 'index.html').read_text()
    m = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', text)
    return m.group(1) if m else 'index.html'


def test_intro_cites_the_paper_and_code(site):
    text = (HTML / _root_page()).read_text()
    assert 'arxiv.org/abs/2003.02460' in text and 'github.com/yangarbiter/robust-local-lipschitz' in text
