"""rl-zoo3's hyperparameter conventions, read as data: ``policy_kwargs`` strings, ``policy:``, ``normalize``,
``env_wrapper`` and ``--gym-packages``.

rl-zoo3 evaluates ``policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` as Python. Here the string is
parsed with :mod:`ast` and only literals are accepted: numbers, strings, booleans, ``None``, lists, tuples, ``{...}``
mappings, ``dict(key=value, ...)`` calls, and the names of ``NAMES`` (``nn.ReLU``, ``nn.Tanh``, ...), which stay names
in the resolved hyperparameters (so ``config.yml`` records them) and become classes only when the model is built.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from experiments.errors import UsageError

#: Names a ``policy_kwargs`` string or value may use for a class (rl-zoo3's files import ``torch.nn as nn``):
#: name -> (module, attribute), imported on demand.
NAMES: dict[str, tuple[str, str]] = {
    **{
        f"{prefix}{name}": ("torch.nn", name)
        for prefix in ("nn.", "th.nn.", "torch.nn.")
        for name in ("ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU", "Sigmoid")
    },  # fmt: skip
    "RMSpropTFLike": ("stable_baselines3.common.sb2_compat.rmsprop_tf_like", "RMSpropTFLike"),
}
#: ``policy_kwargs`` keys whose string values are names of ``NAMES`` (``features_extractor_class`` has its own table).
CLASS_KEYS = ("activation_fn", "optimizer_class")
#: rl-zoo3's ``policy:`` aliases -> the observation kind whose softmax or escort class the run uses.
POLICY_KINDS = {"MlpPolicy": "mlp", "CnnPolicy": "cnn", "MultiInputPolicy": "multi"}
#: Class names a ``policy:`` may give instead (optionally with a module path): name -> (parameterization, kind).
POLICY_CLASSES: dict[str, tuple[str, str]] = {
    "ActorCriticPolicy": ("softmax", "mlp"),
    "ActorCriticCnnPolicy": ("softmax", "cnn"),
    "MultiInputActorCriticPolicy": ("softmax", "multi"),
    "EscortActorCriticPolicy": ("escort", "mlp"),
    "EscortActorCriticCnnPolicy": ("escort", "cnn"),
    "EscortMultiInputActorCriticPolicy": ("escort", "multi"),
}
#: rl-zoo3 keys this runner does not take, with the one line that says what to do instead.
REFUSED_KEYS = {
    "callback": "callback (rl-zoo3's extra training callbacks) is not supported: the run's callbacks are its periodic "
    "evaluation (--eval-freq) and checkpoints (--checkpoint-freq); remove the key",
    "vec_env_wrapper": "vec_env_wrapper is not supported: use normalize, frame_stack or env_wrapper; remove the key",
}


def parse_literal(text: str, what: str) -> Any:
    """Parse a Python literal as rl-zoo3 writes it, without ``eval``.

    :param text: e.g. ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"``
    :param what: the key, for error messages
    :return: plain data; names of ``NAMES`` stay strings (``"nn.ReLU"``)
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise UsageError(f"{what}: {text!r} is not a Python literal ({err.msg})") from None
    return _literal(tree.body, what)


def _literal(node: ast.AST, what: str) -> Any:
    kind = type(node)
    if kind in _NODES:
        return _NODES[kind](node, what)
    raise UsageError(f"{what}: {ast.unparse(node)!r} is not allowed: write literals, dict(...), and {_names_hint()}")


def _constant(node: ast.Constant, what: str) -> Any:
    return node.value


def _sequence(node: ast.List | ast.Tuple, what: str) -> list[Any]:
    return [_literal(item, what) for item in node.elts]


def _mapping(node: ast.Dict, what: str) -> dict[Any, Any]:
    if any(key is None for key in node.keys):
        raise UsageError(f"{what}: '**' is not allowed in {ast.unparse(node)!r}")
    return {_literal(key, what): _literal(value, what) for key, value in zip(node.keys, node.values)}  # type: ignore[arg-type]


def _call(node: ast.Call, what: str) -> dict[str, Any]:
    if (
        not (isinstance(node.func, ast.Name) and node.func.id == "dict")
        or node.args
        or any(k.arg is None for k in node.keywords)
    ):
        raise UsageError(f"{what}: only dict(key=value, ...) calls are allowed, not {ast.unparse(node)!r}")
    return {k.arg: _literal(k.value, what) for k in node.keywords if k.arg is not None}


def _name(node: ast.Name | ast.Attribute, what: str) -> str:
    name = ast.unparse(node)
    if name not in NAMES:
        raise UsageError(f"{what}: unknown name {name!r}: {_names_hint()}")
    return name


def _negative(node: ast.UnaryOp, what: str) -> Any:
    value = _literal(node.operand, what)
    if not isinstance(node.op, (ast.USub, ast.UAdd)) or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{what}: {ast.unparse(node)!r} is not a number")
    return -value if isinstance(node.op, ast.USub) else value


_NODES: dict[type, Callable[[Any, str], Any]] = {
    ast.Constant: _constant,
    ast.List: _sequence,
    ast.Tuple: _sequence,
    ast.Dict: _mapping,
    ast.Call: _call,
    ast.Name: _name,
    ast.Attribute: _name,
    ast.UnaryOp: _negative,
}


def _names_hint() -> str:
    return "names of classes: " + ", ".join(name for name in NAMES if not name.startswith(("th.", "torch.")))


def lookup_name(name: str, what: str) -> Any:
    """:param name: a key of ``NAMES``
    :param what: the key that holds it, for error messages
    :return: the class it names"""
    if name not in NAMES:
        raise UsageError(f"{what}: unknown name {name!r}: {_names_hint()}")
    module, attribute = NAMES[name]
    return getattr(importlib.import_module(module), attribute)


def policy_kwargs_data(value: Any) -> dict[str, Any]:
    """:param value: ``policy_kwargs`` as a file or ``--hyperparams`` gives it: a mapping or a ``"dict(...)"`` string
    :return: the mapping (plain data; class names kept as names)"""
    if value is None:
        return {}
    parsed = parse_literal(value, "policy_kwargs") if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise UsageError(f'policy_kwargs must be a mapping or a "dict(...)" string (got {value!r})')
    for key in CLASS_KEYS:
        if isinstance(parsed.get(key), str):
            lookup_name(parsed[key], f"policy_kwargs.{key}")
    return parsed


def policy_kwargs_objects(policy_kwargs: dict[str, Any]) -> dict[str, Any]:
    """:param policy_kwargs: resolved ``policy_kwargs`` (names of ``NAMES`` under ``CLASS_KEYS``)
    :return: the same, with those names replaced by their classes"""
    named = {
        k: lookup_name(v, f"policy_kwargs.{k}") for k, v in policy_kwargs.items() if k in CLASS_KEYS and isinstance(v, str)
    }
    return {**policy_kwargs, **named}


def normalize_kwargs(value: Any) -> dict[str, Any] | None:
    """rl-zoo3's ``normalize``: ``true``/``false``, or the keyword arguments of ``VecNormalize`` as a mapping or a
    ``"dict(norm_obs=True, norm_reward=False)"`` string.

    :param value: the hyperparameter
    :return: None (no normalisation) or ``VecNormalize``'s keyword arguments (empty: its defaults)
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    parsed = parse_literal(value, "normalize") if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise UsageError(f"normalize must be true, false or a mapping of VecNormalize arguments (got {value!r})")
    return parsed


def wrapper_specs(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """rl-zoo3's ``env_wrapper``: a dotted class path, or a list of paths and ``{path: {kwargs}}`` mappings.

    :param value: the hyperparameter
    :return: (path, kwargs) per wrapper, innermost first; each path is imported to check it
    """
    items = value if isinstance(value, list) else [value]
    specs: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, dict) and len(item) == 1:
            path, kwargs = next(iter(item.items()))
            kwargs = kwargs or {}
        else:
            path, kwargs = item, {}
        if not isinstance(path, str) or not isinstance(kwargs, dict):
            raise UsageError(f"env_wrapper: {item!r} is neither module.Class nor {{module.Class: {{kwargs}}}}")
        import_object(path, "env_wrapper")
        specs.append((path, kwargs))
    return specs


def make_wrapper(specs: Sequence[tuple[str, dict[str, Any]]]) -> Callable[[gym.Env], gym.Env]:
    """:param specs: what ``wrapper_specs`` returned
    :return: a function that applies the wrappers in order (picklable data inside: paths and kwargs)"""
    return _Wrap(tuple((path, dict(kwargs)) for path, kwargs in specs))


class _Wrap:
    """Apply ``env_wrapper``'s wrappers in order."""

    def __init__(self, specs: tuple[tuple[str, dict[str, Any]], ...]) -> None:
        self.specs = specs

    def __call__(self, env: gym.Env) -> gym.Env:
        for path, kwargs in self.specs:
            env = import_object(path, "env_wrapper")(env, **kwargs)
        return env


def import_object(path: str, what: str) -> Any:
    """:param path: ``package.module.Name`` (or ``package.module:Name``)
    :param what: the key or flag, for error messages
    :return: the object"""
    module, sep, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not sep or not module or not name:
        raise UsageError(f"{what}: {path!r} is not a dotted path module.Name")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise UsageError(f"{what}: cannot import {module} ({err})") from None
    except AttributeError:
        raise UsageError(f"{what}: {module} has no {name}") from None


def policy_choice(value: Any, policy: str) -> str:
    """rl-zoo3's ``policy:`` key: an SB3 alias chooses the network kind, the parameterization stays ``--policy``'s;
    a class name (optionally dotted, ``policies.EscortActorCriticPolicy``) also names a parameterization, which must be
    ``--policy``'s.

    :param value: the ``policy`` hyperparameter
    :param policy: ``--policy``
    :return: the observation kind (``mlp``, ``cnn``, ``multi``)
    """
    name = value.rpartition(".")[2] if isinstance(value, str) else value
    if name in POLICY_KINDS:
        return POLICY_KINDS[name]
    if name not in POLICY_CLASSES:
        known = ", ".join([*POLICY_KINDS, *POLICY_CLASSES])
        raise UsageError(f"policy: {value!r} is not a policy this runner builds: choose one of {known}")
    parameterization, kind = POLICY_CLASSES[name]
    if parameterization != policy:
        raise UsageError(
            f"policy: {value} is a class of {parameterization} policies but --policy is {policy}: "
            f"pass --policy {parameterization}, "
            f"or write policy: {next(k for k, v in POLICY_KINDS.items() if v == kind)} (--policy then chooses)"
        )
    return kind


def import_gym_packages(packages: Sequence[str]) -> None:
    """Import the modules that register the user's envs, as rl-zoo3's ``--gym-packages`` does.

    :param packages: module names
    """
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError as err:
            raise UsageError(f"--gym-packages: cannot import {package} ({err}); is it installed or on PYTHONPATH?") from None
