# Installs Python packages for the template's Lambda, not for the machine that builds:
# wheels only, for the platform and Python version below (template.yaml's Architectures
# and Runtime; a test keeps them in step). Override both to build for this machine.
PLATFORM ?= manylinux2014_aarch64
PYTHON_VERSION ?= 3.13
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile \
	--platform $(PLATFORM) --implementation cp --python-version $(PYTHON_VERSION) --only-binary=:all:

# Bytecode for the runtime's Python, in each module's __pycache__: Lambda's /opt is read-only,
# so a layer without it compiles every module a handler imports at each cold start (about
# 0.35 s of a run function's import). `unchecked-hash`: valid whatever the files' times
# after zipping, as a built layer's sources never change. Made by python$(PYTHON_VERSION),
# from pyenv's versions or PATH; a machine without it builds the layer without bytecode.
PYENV_VERSIONS = $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions
PYC_PYTHON ?= $(firstword $(wildcard $(PYENV_VERSIONS)/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION)) \
	$(shell python$(PYTHON_VERSION) -c 'import sys; print(sys.executable)' 2>/dev/null))
define compile_bytecode
	@if [ -n "$(PYC_PYTHON)" ]; then \
		"$(PYC_PYTHON)" -m compileall -q -j 0 --invalidation-mode unchecked-hash $(1) > /dev/null; \
	else \
		echo "no python$(PYTHON_VERSION) on this machine: the layer is built without bytecode" \
			"(each cold start compiles the modules it imports)" >&2; \
	fi
endef
