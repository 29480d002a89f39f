# The two commands a newcomer needs: `make demo` (the whole pipeline on the built-in simulators)
# and `make test` (the whole suite). Everything installs into .venv from pinned requirements.
PY := .venv/bin/python
.DEFAULT_GOAL := help
.PHONY: help venv services demo demo-once test check lint typecheck bench chaos chaos-long fixtures fixtures-check definitions

help:
	@echo "make demo    run the whole pipeline against the built-in simulators (Ctrl-C stops)"
	@echo "make test    install everything; check formatting, lint and strict types; run every test"
	@echo "make check   the same, and the Twilio fixtures against their OpenAPI description"

venv:
	@./scripts/bootstrap.sh

services: venv
	@./scripts/services.sh

demo: services
	@$(PY) scripts/demo.py

demo-once: services
	@$(PY) scripts/demo.py --once

# Every benchmark (pipeline at saturation and at 100/s and 500/s offered, ingress alone, a
# backlog drained, Exact calls of an invoicing run), written into BENCHMARKS.md.
bench: services
	@$(PY) scripts/bench_all.py

# N invoices through the pipeline while services are SIGKILLed, the broker and the database
# restart, connections are cut and the vendors misbehave; fails on any lost or duplicated SMS.
chaos: venv
	@$(PY) scripts/chaos.py --invoices 1000

chaos-long: venv
	@$(PY) scripts/chaos.py --invoices 10000 --customers 1000 --batch 200 --json .mlc/chaos-long.json

# The whole check a change must pass: formatting, lint, strict types of every package, tests.
test: services lint typecheck
	@$(PY) -m pytest -q

lint: venv
	@$(PY) -m ruff format --check .
	@$(PY) -m ruff check .

typecheck: venv
	@$(PY) -m mypy

check: fixtures-check test

# Compares the committed Twilio fixtures with the OpenAPI description they were derived from,
# where that description is at hand (../shared/twilio-oai).
fixtures-check: venv
	@$(PY) scripts/derive_twilio_fixture.py --check

fixtures: venv
	@$(PY) scripts/derive_twilio_fixture.py

definitions: venv
	@$(PY) -m common.topology > deploy/rabbitmq/definitions.json

# Ingress alone: signed webhooks acknowledged per second after the broker's confirm, and latency
# at a fixed offered rate (scripts/bench_ingress.py --help).
.PHONY: bench-ingress
bench-ingress: venv
	@$(PY) scripts/bench_ingress.py --repeat 3 --markdown

# The audit trail alone on a private PostgreSQL cluster: the auditor's SQL, without the broker.
.PHONY: bench-trail
bench-trail: venv
	@$(PY) scripts/bench_trail.py --repeat 3 --markdown

# A backlog of 10,000 sends drained once the dispatcher starts, and the peak Twilio request rate
# against the pacing (scripts/bench_backlog.py --help).
.PHONY: bench-backlog
bench-backlog: venv
	@$(PY) scripts/bench_backlog.py --env MLC_DISPATCHER_TWILIO_RATE=100

# Throughput, latency and CPU per notification of the whole pipeline on a private RabbitMQ node
# and PostgreSQL cluster; prints a section for BENCHMARKS.md (scripts/bench_pipeline.py --help).
.PHONY: bench-pipeline
bench-pipeline: venv
	@$(PY) scripts/bench_pipeline.py --repeat 3 --markdown
