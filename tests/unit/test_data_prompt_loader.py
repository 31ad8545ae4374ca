"""Indexed prompt datasets and the resumable prompt loader."""

import json

import pytest

from mindspeed_rl.data.indexed import PromptDataset, dataset_files, write_prompt_dataset
from mindspeed_rl.data.prompt_loader import PromptLoader, PromptLoaderConfig
from mindspeed_rl.errors import UserError

ROWS = 23


@pytest.fixture
def dataset_prefix(tmp_path):
    prefix = tmp_path / "ds"
    rows = [
        (list(range(i, i + 1 + i % 5)), json.dumps({"n": i, "s": "é\\boxed{}"}))
        for i in range(ROWS)
    ]
    assert write_prompt_dataset(prefix, rows, {"rows_kept": ROWS}) == ROWS
    return prefix


def test_round_trip(dataset_prefix):
    dataset = PromptDataset(dataset_prefix)
    assert len(dataset) == ROWS
    assert dataset.prompt_ids(7) == list(range(7, 10))
    assert json.loads(dataset.label(7)) == {"n": 7, "s": "é\\boxed{}"}
    assert dataset.prompt_lengths.tolist() == [1 + i % 5 for i in range(ROWS)]
    assert dataset.summary == {"rows_kept": ROWS}
    assert not list(dataset_prefix.parent.glob(".*tmp*"))


def test_failed_write_leaves_nothing(tmp_path):
    def rows():
        yield [1, 2], "a"
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_prompt_dataset(tmp_path / "ds", rows(), {})
    assert list(tmp_path.iterdir()) == []


def test_missing_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no preprocessed dataset"):
        PromptDataset(tmp_path / "none")


def loader(prefix, **kwargs) -> PromptLoader:
    return PromptLoader(PromptLoaderConfig(data_prefix=str(prefix), **kwargs))


def test_batches_cover_each_epoch_once_and_reshuffle(dataset_prefix):
    load = loader(dataset_prefix, batch_size=5, seed=7)
    assert len(load) == ROWS // 5
    first = [b for b in load]
    assert len(first) == 4 and all(len(b.indices) == 5 for b in first)
    seen = [i for b in first for i in b.indices]
    assert len(set(seen)) == 20
    batch = first[0]
    assert batch.labels == [PromptDataset(dataset_prefix).label(i) for i in batch.indices]
    assert batch.prompt_ids[0] == list(
        range(batch.indices[0], batch.indices[0] + 1 + batch.indices[0] % 5)
    )
    second = [b for b in load]
    assert second[0].epoch == 1 and second[0].indices != batch.indices
    # Same seed, same order, in a new loader.
    assert [b.indices for b in loader(dataset_prefix, batch_size=5, seed=7)] == [
        b.indices for b in first
    ]
    assert [b.indices for b in loader(dataset_prefix, batch_size=5, seed=8)] != [
        b.indices for b in first
    ]


def test_keep_last_and_no_shuffle(dataset_prefix):
    load = loader(dataset_prefix, batch_size=5, shuffle=False, drop_last=False)
    batches = list(load)
    assert len(load) == len(batches) == 5
    assert batches[0].indices == [0, 1, 2, 3, 4] and batches[-1].indices == [20, 21, 22]


def test_resume_gives_the_same_batches(dataset_prefix):
    reference = loader(dataset_prefix, batch_size=4, seed=3)
    expected = [reference.next_batch().indices for _ in range(12)]
    for stop in (0, 1, 5, 6, 11):
        run = loader(dataset_prefix, batch_size=4, seed=3)
        for _ in range(stop):
            run.next_batch()
        state = json.loads(json.dumps(run.state_dict()))
        resumed = loader(dataset_prefix, batch_size=4, seed=3)
        resumed.load_state_dict(state)
        assert [resumed.next_batch().indices for _ in range(12 - stop)] == expected[stop:]


def test_resume_refuses_another_seed_or_dataset(dataset_prefix):
    state = loader(dataset_prefix, batch_size=4, seed=3).state_dict()
    with pytest.raises(ValueError, match="seed=3 but this loader has seed=4"):
        loader(dataset_prefix, batch_size=4, seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="rows"):
        loader(dataset_prefix, batch_size=4, seed=3).load_state_dict({**state, "rows": 99})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2, "seed": -1}, "seed"),
        ({"batch_size": 100}, "fewer than"),
    ],
)
def test_bad_config(dataset_prefix, kwargs, message):
    with pytest.raises(ValueError, match=message):
        loader(dataset_prefix, **kwargs)


def test_files(tmp_path):
    names = [p.name for p in dataset_files(tmp_path / "x")]
    assert names == ["x_prompt.bin", "x_prompt.idx", "x_label.bin", "x_label.idx", "x_summary.json"]
