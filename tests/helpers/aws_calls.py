"""The AWS calls a Lambda entry point can make, read from the source: what its IAM role must allow.

A static reading of ``model/classifier``, no import of it:

1. The entry's import closure: the package's modules it imports, at any depth (imports inside
   functions included).
2. What it can reach from the entry: every function and method it calls or refers to (a route
   handed to Starlette is a reference, not a call), transitively, within that closure. A call
   ``self.m()`` reaches ``m`` of the same class (or its relatives); ``module.f()`` and imported
   names reach what they name; ``<receiver>.m()`` reaches the methods named ``m`` of the classes
   ``RECEIVERS`` says that receiver holds (``records``: the record stores, ``deferred``: where
   refused writes wait, ...); any other ``x.m()`` reaches every method named ``m`` in the closure,
   unless ``m`` is also a method of Python's built-in types (``get``, ``read``, ...), whose calls on
   unknown receivers are taken for those (a dict's ``get`` is not a record store's).
3. The AWS calls among what it reaches: ``<client>.<operation>(...)`` where the module creates
   a boto3 client (or takes one as an argument named after its service, ``CLIENT_ARGUMENTS``)
   whose service model (botocore's) has that operation, and the helpers boto3 adds to clients
   (``upload_file``, ``generate_presigned_post``).
4. Each call's IAM action: ``<service prefix>:<Operation>`` (``IAM_PREFIX`` where the prefix is
   not the signing name), except where AWS's Service
   Authorization Reference names another (``ACTION_OF``).

The reading over-approximates by name, never under-approximates what it resolves; what it
cannot see is a receiver named unlike ``RECEIVERS`` holding an AWS-calling object, which
``unreached_aws_calls`` reports (an AWS call no entry point reaches is either dead code or a
path this reading missed).
"""

from __future__ import annotations

import ast
import builtins
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

PACKAGE = "classifier"

# How the code names the objects that call AWS, and which classes those names hold.
RECEIVERS: dict[str, tuple[str, ...]] = {
    "records": ("classifier.records.dynamodb.DynamoRecordStore", "classifier.records.sqlite.SqliteRecordStore",
                "classifier.records.deferral.DeferringRecordStore"),
    "database": ("classifier.records.dynamodb.DynamoRecordStore", "classifier.records.sqlite.SqliteRecordStore"),
    "deferred": ("classifier.records.deferral.S3Deferral", "classifier.records.deferral.DirectoryDeferral"),
    "session": (),  # an onnxruntime InferenceSession
    "backend": ("classifier.serving.backends.onnx_backend.OnnxBackend",
                "classifier.serving.backends.torch_backend.TorchBackend"),
    "uploads": ("classifier.aws.uploads.Uploads",),
    "classifier": ("classifier.serving.service.Classifier",),
    "cursors": ("classifier.records.cursors.Cursors",),
}

# IAM actions whose name is not the operation's (Service Authorization Reference: HeadObject and
# HeadBucket are authorized as GetObject and ListBucket), and client helpers that are not operations.
ACTION_OF: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "head_object"): ("s3:GetObject",),
    ("s3", "head_bucket"): ("s3:ListBucket",),
    # A presigned POST is signed with the caller's credentials: S3 checks PutObject on them when it is used.
    ("s3", "generate_presigned_post"): ("s3:PutObject",),
    # s3transfer: a multipart upload (PutObject covers its parts), aborted when a part fails.
    ("s3", "upload_file"): ("s3:PutObject", "s3:AbortMultipartUpload"),
}
CLIENT_HELPERS = {("s3", "generate_presigned_post"), ("s3", "upload_file")}
# IAM's service prefix where it is not the service's signing name (CloudWatch signs as "monitoring").
IAM_PREFIX = {"monitoring": "cloudwatch"}
# A function argument of one of these names holds a boto3 client of that service, passed in by a caller
# that created it (the rollout judge hands its CloudWatch client to classifier.store.cloudwatch_evidence).
CLIENT_ARGUMENTS = {"s3": "s3", "cloudwatch": "cloudwatch"}

# Method names of Python's built-in types: on a receiver of unknown type, a call of one of these is
# taken for the built-in's.
BUILTIN_METHODS = frozenset(
    name for kind in (dict, list, str, bytes, set, frozenset, tuple, io.BytesIO, io.StringIO)
    for name in dir(kind) if not name.startswith("__")
) | frozenset(dir(builtins))


@dataclass
class Function:
    module: str
    qualname: str  # "f", or "Class.m"
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Module

    @property
    def cls(self) -> str | None:
        return self.qualname.split(".")[0] if "." in self.qualname else None

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    @property
    def key(self) -> str:
        return f"{self.module}.{self.qualname}"


@dataclass
class Module:
    name: str
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> module or module.attr
    services: set[str] = field(default_factory=set)  # boto3 clients it creates
    classes: dict[str, list[str]] = field(default_factory=dict)  # class -> its base names


class Package:
    """Every module of ``root`` (a ``classifier`` directory), parsed once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, Module] = {}
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            self.modules[name] = self._read(name, path)
        self.functions: dict[str, Function] = {}
        for module in self.modules.values():
            self.functions[f"{module.name}.<module>"] = Function(module.name, "<module>", module.tree)
            for node in module.tree.body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    self.functions[f"{module.name}.{node.name}"] = Function(module.name, node.name, node)
                elif isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                            qualname = f"{node.name}.{item.name}"
                            self.functions[f"{module.name}.{qualname}"] = Function(module.name, qualname, item)

    def _read(self, name: str, path: Path) -> Module:
        tree = ast.parse(path.read_text(), str(path))
        module = Module(name, tree)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    module.imports[alias.asname or alias.name.split(".")[0]] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parents, base]).strip(".")
                for alias in node.names:
                    module.imports[alias.asname or alias.name] = f"{base}.{alias.name}"
            elif (isinstance(node, ast.Call) and _dotted(node.func) in ("boto3.client", "boto3.Session.client")
                  and node.args and isinstance(node.args[0], ast.Constant)):
                module.services.add(str(node.args[0].value))
            elif isinstance(node, ast.arg) and node.arg in CLIENT_ARGUMENTS:
                module.services.add(CLIENT_ARGUMENTS[node.arg])
            elif isinstance(node, ast.ClassDef):
                module.classes[node.name] = [_dotted(b) for b in node.bases]
        return module

    # -- 1. the import closure -------------------------------------------------------------------

    def closure(self, entry_module: str) -> set[str]:
        seen: set[str] = set()
        todo = [entry_module]
        while todo:
            name = todo.pop()
            if name in seen or name not in self.modules:
                continue
            seen.add(name)
            # A package's __init__ runs before any of its modules.
            parent = name.rsplit(".", 1)[0]
            if parent != name and parent in self.modules:
                todo.append(parent)
            for target in self.modules[name].imports.values():
                if target.split(".")[0] != PACKAGE:
                    continue
                todo.append(target if target in self.modules else target.rsplit(".", 1)[0])
        return seen

    # -- 2. what an entry reaches ----------------------------------------------------------------

    def reachable(self, entry: str) -> set[str]:
        """Keys of every function ``entry`` (``module.function``, or ``module`` for its top level) may run."""
        module = entry if entry in self.modules else entry.rsplit(".", 1)[0]
        closure = self.closure(module)
        start = [f"{entry}.<module>"] if entry in self.modules else [f"{module}.<module>", entry]
        # Importing a module runs its top level.
        start += [f"{m}.<module>" for m in closure]
        reached: set[str] = set()
        todo = list(start)
        while todo:
            key = todo.pop()
            if key in reached or key not in self.functions:
                continue
            reached.add(key)
            todo.extend(self._targets(self.functions[key], closure))
        return reached

    def _targets(self, function: Function, closure: set[str]) -> Iterator[str]:
        module = self.modules[function.module]
        body = function.node.body if isinstance(function.node, ast.Module) else [function.node]
        for node in _walk_own(body, top_level=isinstance(function.node, ast.Module)):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                yield from self._named(module, node.id, closure)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                yield from self._attribute(module, function, node, closure)

    def _named(self, module: Module, name: str, closure: set[str]) -> Iterator[str]:
        """A bare name: a function or class of this module, or one it imported."""
        for target in (f"{module.name}.{name}", module.imports.get(name, "")):
            if target in self.functions:
                yield target
            yield from self._class_entry(target, closure)

    def _class_entry(self, dotted: str, closure: set[str]) -> Iterator[str]:
        """A referenced class: what Python calls on it by itself (construction, ``__call__``, ...)."""
        owner, _, cls = dotted.rpartition(".")
        if owner in self.modules and owner in closure and cls in self.modules[owner].classes:
            yield from (k for k, f in self.functions.items()
                        if f.module == owner and f.cls == cls and f.name.startswith("__"))

    def _attribute(self, module: Module, function: Function, node: ast.Attribute, closure: set[str]) -> Iterator[str]:
        name, receiver = node.attr, node.value
        if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls") and function.cls:
            yield from self._methods(name, closure, within=self._relatives(function.module, function.cls))
            return
        if isinstance(receiver, ast.Name):
            target = module.imports.get(receiver.id) or f"{module.name}.{receiver.id}"
            if target in self.modules:  # module.function
                yield from self._named(self.modules[target], name, closure)
                return
            owner, _, cls = target.rpartition(".")
            if owner in self.modules and cls in self.modules[owner].classes:  # Class.method
                yield from self._methods(name, closure, within={f"{owner}.{cls}"})
                return
        held = RECEIVERS.get(_last_name(receiver) or "")
        if held is not None:
            yield from self._methods(name, closure, within=set(held))
        elif name not in BUILTIN_METHODS:
            yield from self._methods(name, closure)

    def _methods(self, name: str, closure: set[str], *, within: set[str] | None = None) -> Iterator[str]:
        for key, function in self.functions.items():
            if function.name == name and function.cls and function.module in closure and (
                    within is None or f"{function.module}.{function.cls}" in within):
                yield key

    def _relatives(self, module: str, cls: str) -> set[str]:
        """A class, the package's classes it derives from, and the ones derived from it (``self`` may be any)."""
        classes = {f"{m.name}.{c}": (m, bases) for m in self.modules.values() for c, bases in m.classes.items()}

        def base_keys(key: str) -> set[str]:
            owner, bases = classes[key]
            found = set()
            for base in bases:
                target = owner.imports.get(base) or f"{owner.name}.{base}"
                if target in classes:
                    found.add(target)
            return found

        family = {f"{module}.{cls}"}
        changed = True
        while changed:
            before = len(family)
            family |= {b for key in list(family) for b in base_keys(key)}
            family |= {key for key in classes if base_keys(key) & family}
            changed = len(family) != before
        return family

    # -- 3. and 4. the AWS calls, and their IAM actions ------------------------------------------

    def aws_calls(self, key: str) -> set[tuple[str, str]]:
        """(service, boto3 method) of the client calls in one function's own body."""
        function = self.functions[key]
        services = self.modules[function.module].services
        body = function.node.body if isinstance(function.node, ast.Module) else [function.node]
        calls = set()
        for node in _walk_own(body, top_level=isinstance(function.node, ast.Module)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                for service in services:
                    if node.func.attr in operations(service) or (service, node.func.attr) in CLIENT_HELPERS:
                        calls.add((service, node.func.attr))
        return calls

    def actions(self, entry: str) -> set[str]:
        """The IAM actions of every AWS call ``entry`` may make."""
        calls = {call for key in self.reachable(entry) for call in self.aws_calls(key)}
        return {action for call in calls for action in iam_actions(*call)}

    def unreached_aws_calls(self, entries: Iterable[str]) -> set[str]:
        """Functions making AWS calls that none of ``entries`` reaches."""
        reached = set().union(*(self.reachable(e) for e in entries))
        return {key for key in self.functions if self.aws_calls(key) and key not in reached}


@cache
def operations(service: str) -> frozenset[str]:
    """The boto3 method names of a service's operations, from botocore's own service model."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return frozenset(xform_name(op) for op in model.operation_names)


@cache
def iam_actions(service: str, method: str) -> tuple[str, ...]:
    if (service, method) in ACTION_OF:
        return ACTION_OF[(service, method)]
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    operation = next(op for op in model.operation_names if _snake(op) == method)
    return (f"{IAM_PREFIX.get(model.signing_name, model.signing_name)}:{operation}",)


def _snake(operation: str) -> str:
    from botocore import xform_name

    return str(xform_name(operation))


def _walk_own(body: list[ast.stmt] | list[ast.AST], *, top_level: bool) -> Iterator[ast.AST]:
    """The nodes of ``body``, not descending into nested function or class definitions at a module's top level
    (they are functions of their own); a function's nested helpers are part of it."""
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        if top_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            # Only decorators and base classes run at import.
            todo.extend(node.decorator_list)
            if isinstance(node, ast.ClassDef):
                todo.extend(node.bases)
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _last_name(node: ast.AST) -> str | None:
    """``records`` of ``self.records``, ``request.app.state.records`` or ``records``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None
