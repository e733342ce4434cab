# lowbit — every target installs what it needs first (a project virtual environment in .venv).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU build available on these machines before the package's own
# range is resolved; otherwise pip would pull a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: install test test-all demo bench accuracy accuracy-lenet lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_CPU)" || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e ".[test]"
	@# From Debian where apt works (root): Fashion-MNIST (else lowbit falls back to digits),
	@# ccache (Verilator builds recompile the same runtime; without it they are ~6x slower) and
	@# Icarus Verilog (iverilog, vvp: 'lowbit sim --simulator icarus' and the standalone testbench
	@# of every build; the default test tier runs both). A fresh machine has no package lists, so
	@# apt cannot find them: then the lists are updated and the install tried once more. The
	@# first two are optional; without iverilog afterwards the install fails (tests need it).
	-@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		pkgs=""; [ -d /usr/share/datasets/fashion-mnist ] || pkgs="$$pkgs dataset-fashion-mnist"; \
		command -v ccache >/dev/null || pkgs="$$pkgs ccache"; \
		command -v iverilog >/dev/null || pkgs="$$pkgs iverilog"; \
		[ -z "$$pkgs" ] || apt-get install -y -q $$pkgs >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$pkgs >/dev/null 2>&1; } \
		|| echo "note: apt could not install$$pkgs"; fi
	@command -v iverilog >/dev/null && command -v vvp >/dev/null || { \
		echo "error: Icarus Verilog (iverilog, vvp) is not installed and the tests need it:" \
		     "install it (Debian/Ubuntu as root: apt-get install iverilog) and run 'make install' again" >&2; \
		exit 1; }
	touch $(STAMP)

test: install
	$(PY) -m pytest -n 2 -q

test-all: install
	$(PY) -m pytest -n 2 -q -m ""

demo: install
	$(VENV)/bin/lowbit demo

bench: install
	$(VENV)/bin/lowbit bench

accuracy: install
	$(VENV)/bin/lowbit report accuracy

# LeNet's rows on their own: 3 QAT epochs (a LeNet QAT epoch costs ~10 SFC ones)
accuracy-lenet: install
	$(VENV)/bin/lowbit report accuracy --presets lenet --qat-epochs 3

clean:
	rm -rf build
