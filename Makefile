# Set-up is part of every target: `make test` and `make demo` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The shared offline copy of the data, when it sits beside the checkout; otherwise staging downloads
# the official CIFAR-100 archive (and checks its MD5).
SHARED_DATASET := $(abspath ../shared/datasets/cifar100-bicycle-motorcycle)
export SCONES_DATASET ?= $(if $(wildcard $(SHARED_DATASET)/train.lst),$(SHARED_DATASET),)
INSTALLED := $(VENV)/.installed

.PHONY: install test lint typecheck browser demo bench package deploy destroy audit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 is pinned in the `train` extra: pip takes the machine's local CPU wheel.
# constraints.txt holds the exact versions the tests ran with (fast, reproducible installs).
$(INSTALLED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[serve,train,report,dev]'
	touch $@

install: $(INSTALLED)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

# The review page's browser test drives Debian's Chromium: installed here when it is missing
# (root or sudo needed, about 40 s), or point SCONES_BROWSER at another Chromium.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@[ -n "$$SCONES_BROWSER" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser test"; \
		$(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

test: lint typecheck browser
	$(BIN)/pytest

demo: $(INSTALLED)
	$(BIN)/scones demo

# Benchmarks, one after another on an otherwise idle machine (speed is measured here, not in tests).
bench: $(INSTALLED)
	$(BIN)/python bench/training_time.py
	$(BIN)/python bench/endpoint_latency.py --threads 2
	$(BIN)/python bench/preprocessing_cost.py
	$(BIN)/python bench/handler_import.py
	$(BIN)/python bench/flow.py

# The Lambda functions' code for `aws cloudformation package` (the template's CodeUri): our torch-free
# packages plus what the handlers import, as Linux x86_64 wheels for the functions' Python
# (workflow.names.LAMBDA_RUNTIME, Amazon Linux 2023), at the versions the tests ran with
# (constraints.txt). boto3 is packaged although Lambda has one: aws-xray-sdk brings its own
# botocore, and boto3 must match its botocore.
LAMBDA_PYTHON := 3.12
LAMBDA_DEPENDENCIES := aws-lambda-powertools aws-xray-sdk boto3 pydantic numpy pillow jmespath
package: $(INSTALLED)
	rm -rf build/lambda && mkdir -p build/lambda
	$(BIN)/pip install --quiet --disable-pip-version-check --target build/lambda -c constraints.txt \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --implementation cp \
		--python-version $(LAMBDA_PYTHON) --only-binary=:all: $(LAMBDA_DEPENDENCIES)
	cp -r scones handlers workflow build/lambda/
	find build/lambda -name __pycache__ -prune -exec rm -rf {} +

# Real AWS: `make deploy DEPLOY_ARGS="--artifacts-bucket B [--model-data ... --serving-image ...]"`,
# `make destroy DESTROY_ARGS="--bucket B [--delete-data]"`; add --dry-run to either to see the plan.
deploy: package
	$(BIN)/scones deploy $(DEPLOY_ARGS)

destroy: $(INSTALLED)
	$(BIN)/scones destroy $(DESTROY_ARGS)

# Known vulnerabilities in the locked dependencies. Needs pypi.org's JSON API (the vulnerability
# service); where it is unreachable, pip-audit reports each package as "not found" instead.
audit: $(INSTALLED)
	$(BIN)/pip-audit --no-deps --disable-pip --requirement constraints.txt

clean:
	rm -rf $(VENV) build .scones .pytest_cache .mypy_cache .ruff_cache
