"""Nothing encluster reads can execute code: no pickle, eval, exec or shell in the source."""

import ast
from pathlib import Path

SOURCE = Path(__file__).parent.parent / "src" / "encluster"


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            yield name, node


def test_no_code_executing_loaders_in_the_source():
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in {"pickle", "dill", "cloudpickle", "marshal", "shelve", "subprocess"}
                               for n in names), f"{path}: imports {names}"
        for name, call in _calls(tree):
            builtin = isinstance(call.func, ast.Name)
            assert not (builtin and name in {"eval", "exec", "compile", "__import__"}), f"{path}:{call.lineno} calls {name}"
            assert name not in {"system", "popen"}, f"{path}:{call.lineno} calls os.{name}"
            keywords = {k.arg: k.value for k in call.keywords}
            if name == "load" and isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", "") == "torch":
                assert isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True, \
                    f"{path}:{call.lineno} torch.load without weights_only=True"
            if name == "load" and getattr(call.func.value, "id", "") in {"np", "numpy"} if isinstance(call.func, ast.Attribute) else False:
                assert isinstance(keywords.get("allow_pickle"), ast.Constant) and keywords["allow_pickle"].value is False, \
                    f"{path}:{call.lineno} np.load without allow_pickle=False"
            if "shell" in keywords:
                assert False, f"{path}:{call.lineno} passes shell="
