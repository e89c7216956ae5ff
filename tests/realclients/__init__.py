"""Harness that drives the real `claude -p` and `opencode run` offline against a scripted fake model.

- `fake_model`: `FakeModelServer`, a stdlib HTTP server on 127.0.0.1 speaking the Anthropic
  Messages API and OpenAI chat completions, answering from a script of turns.
- `agents`: `Scratch` directories and the `run_claude` / `run_opencode` drivers, each in a clean
  environment.
"""
