"""``judge:SPEC``: how every command that takes a reward model (``score``, ``compare``, ``rank``, ``eval``,
``bench``, ``serve``) takes an LLM judge instead. ``SPEC`` is one of

- a local chat model: a directory or hub name (``judge:./qwen3-8b``);
- an OpenAI-compatible endpoint and its served model: ``judge:http://127.0.0.1:8000/v1#qwen3-8b`` (the fragment
  after ``#`` is the model's name; it is never sent as part of the URL);
- a judge file (``judge:judge.yaml``, YAML or JSON): a :class:`~rewardlab.config.schema.JudgeFile` — the backend,
  its key's environment variable, templates, scale, pairwise schedule and aggregation, cache, rate limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.config.schema import JudgeFile, JudgeSettings
from rewardlab.errors import ConfigError
from rewardlab.judges.judge import Judge

PREFIX = "judge:"
FILE_SUFFIXES = (".yaml", ".yml", ".json")


def is_judge(model: str) -> bool:
    return model.startswith(PREFIX)


def read_spec(spec: str) -> JudgeFile:
    """The :class:`JudgeFile` a ``judge:SPEC`` names (the ``judge:`` prefix optional)."""
    from rewardlab.config.loading import build_config, read_yaml

    spec = spec.removeprefix(PREFIX)
    if not spec:
        raise ConfigError("judge: names nothing; give judge:MODEL_DIR, judge:http://HOST:PORT/v1#MODEL or "
                          "judge:judge.yaml")  # fmt: skip
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        if not model:
            raise ConfigError(f"judge:{spec}: an endpoint needs its served model's name after '#', e.g. "
                              f"judge:{url}#qwen3-8b")  # fmt: skip
        return JudgeFile(url=url, model=model)
    if spec.lower().endswith(FILE_SUFFIXES):
        path = Path(spec).expanduser()
        data = read_yaml(path)  # a ConfigError naming the file when it is missing or not a mapping (JSON is YAML)
        settings = build_config(JudgeFile, data, source=str(path))
        return relative_to(settings, path.parent)
    return JudgeFile(path=spec)


def relative_to(settings: JudgeFile, folder: Path) -> JudgeFile:
    """``settings`` with its relative paths (model folder, cache, template files) read from ``folder``."""

    def resolve(value: str | None, *, must_exist: bool) -> str | None:
        if value is None or "{{" in value or Path(value).expanduser().is_absolute():
            return value
        candidate = folder / value
        return str(candidate) if (candidate.exists() or not must_exist) else value

    template = settings.template
    if isinstance(template, dict):
        template = {k: resolve(v, must_exist=True) or v for k, v in template.items()}
    else:
        template = resolve(template, must_exist=True)
    return settings.model_copy(
        update={
            "path": resolve(settings.path, must_exist=True),
            "cache": resolve(settings.cache, must_exist=False),
            "template": template,
        }
    )


def templates(settings: JudgeSettings) -> dict[str, str | None]:
    """``Judge``'s template arguments: a string is ``mode``'s template, a mapping names each kind's."""
    if isinstance(settings.template, dict):
        return {"pointwise": settings.template.get("pointwise"), "pairwise": settings.template.get("pairwise")}
    return {settings.mode: settings.template}


def build_judge(settings: JudgeSettings, *, path: str | None = None, url: str | None = None,
                api_key_env: str | None = None, device: str = "cpu", dtype: str | None = None,
                batch_size: int = 8) -> Judge:  # fmt: skip
    """A :class:`Judge` on a local model (``path``) or an endpoint (``url`` + ``settings.model``), behind the
    SQLite cache when ``settings.cache`` is set; templates checked before any model loads."""
    from rewardlab.judges.backends import CachedBackend, EndpointBackend, LocalBackend
    from rewardlab.judges.templates import Template

    chosen = templates(settings)
    for kind, source in chosen.items():
        Template(source, kind)  # type: ignore[arg-type]  # a bad template fails before a model loads
    if url:
        backend: Any = EndpointBackend(url, str(settings.model), api_key_env=api_key_env,
                                       concurrency=settings.concurrency, rate=settings.rate)  # fmt: skip
    else:
        backend = LocalBackend(str(path), device=device, dtype=dtype, batch_size=batch_size)
    if settings.cache:
        backend = CachedBackend(backend, settings.cache)
    return Judge(backend, scale=settings.scale, **chosen)


def load_judge(spec: str, *, device: str = "cpu", dtype: str | None = None,
               batch_size: int = 8) -> tuple[Judge, JudgeFile]:  # fmt: skip
    """The judge of ``judge:SPEC`` and its settings."""
    settings = read_spec(spec)
    judge = build_judge(settings, path=settings.path, url=settings.url, api_key_env=settings.api_key_env,
                        device=device, dtype=dtype, batch_size=batch_size)  # fmt: skip
    return judge, settings


def describe(settings: JudgeFile) -> str:
    """One line on how the judge judges, for logs and reports (never the key)."""
    where = f"{settings.url} ({settings.model})" if settings.url else str(settings.path)
    if settings.mode == "pointwise":
        how = f"pointwise, the expected score on {settings.scale[0]}-{settings.scale[1]}"
    else:
        how = f"pairwise (both orders), {settings.schedule} pairs, {settings.aggregation.replace('_', '-')}"
    custom = " with its own template" if settings.template else " with the default template"
    return f"judge: {how}{custom}, {where}"
