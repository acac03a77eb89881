import json

from benchmarks import families


def test_documenting_one_family_keeps_the_other_sections_in_registry_order(tmp_path, monkeypatch):
    monkeypatch.setattr(families, "DOCS", tmp_path)
    old = "# Task families\n\nintro\n\n## `grasp` — old grasp\n\n## `door` — old door\n"
    (tmp_path / "families.md").write_text(old)
    (tmp_path / "families.json").write_text(json.dumps([{"family": "grasp", "v": 1}, {"family": "door", "v": 1}]))
    sections, records = families._merged({"terrain": "## `terrain` — new\n"}, [{"family": "terrain", "v": 2}])
    assert [s.split("`")[1] for s in sections] == ["grasp", "terrain", "door"]
    assert sections[1] == "## `terrain` — new\n" and sections[2].startswith("## `door` — old door")
    assert records == [{"family": "grasp", "v": 1}, {"family": "terrain", "v": 2}, {"family": "door", "v": 1}]
