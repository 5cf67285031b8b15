# Installs Python packages for the template's Lambda, not for the machine that builds:
# wheels only, for the platform and Python version below (template.yaml's Architectures
# and Runtime; a test keeps them in step). Override both to build for this machine.
PLATFORM ?= manylinux2014_aarch64
PYTHON_VERSION ?= 3.13
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile \
	--platform $(PLATFORM) --implementation cp --python-version $(PYTHON_VERSION) --only-binary=:all:
