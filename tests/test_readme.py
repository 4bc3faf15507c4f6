"""The README's Python tour runs as written (with training shortened to a few steps)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what the tour writes (the explorer's page) stays out of the way
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    code = "\n".join(blocks)
    code = re.sub(r"steps=\d+", "steps=3", code)  # the tour trains for real; the test briefly
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    tr = namespace["tr"]
    assert tr.grad_h.shape == (4, 50)  # 2 layers x 2 directions, T = 50
    assert namespace["history"].records
    assert (tmp_path / namespace["page"]).is_file()
