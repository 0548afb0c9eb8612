"""The offline light client's directory (`chainnode.light.store`) on a real file system: saves
survive reopening, a crash between the hash log and the state is repaired, a damaged directory
is refused, and fork evidence is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainnode.core.errors import StorageError
from chainnode.light import LightError
from chainnode.light.store import HASHES_FILE, STATE_FILE, LightStore
from tests.governance_harness import Network
from tests.light_harness import CertifiedChain


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> CertifiedChain:
    chain = CertifiedChain(Network.create(tmp_path_factory.mktemp("light-store")))
    for _ in range(6):
        chain.run(chain.put("pku"))
    return chain


def test_saves_reopen_and_resume(chain: CertifiedChain, tmp_path: Path) -> None:
    store = LightStore(tmp_path / "light")
    assert store.load() is None
    state = chain.follow(chain.start_light_state(), up_to=3)
    store.save(state, [chain.blocks[height].hash for height in (1, 2, 3)])
    reopened = LightStore(tmp_path / "light")
    assert reopened.load() == state
    assert [reopened.get_header_hash(height) for height in (1, 2, 3)] == [
        chain.blocks[h].hash for h in (1, 2, 3)
    ]
    later = chain.follow(state, up_to=5)
    reopened.save(later, [chain.blocks[4].hash, chain.blocks[5].hash])
    assert LightStore(tmp_path / "light").load() == later
    # Hashes that do not continue the log are refused, the state is not replaced.
    with pytest.raises(StorageError):
        reopened.save(chain.follow(later, up_to=6), [])
    assert LightStore(tmp_path / "light").load() == later


def test_a_crash_between_the_log_and_the_state_is_cut_back(chain: CertifiedChain, tmp_path: Path) -> None:
    store = LightStore(tmp_path)
    state = chain.follow(chain.start_light_state(), up_to=2)
    store.save(state, [chain.blocks[1].hash, chain.blocks[2].hash])
    # The next save wrote its hashes, then the process died before the state was replaced.
    with open(tmp_path / HASHES_FILE, "ab") as file:
        file.write(chain.blocks[3].hash + chain.blocks[4].hash)
    assert store.load() == state
    assert (tmp_path / HASHES_FILE).stat().st_size == 2 * 32
    store.save(chain.follow(state, up_to=3), [chain.blocks[3].hash])
    assert store.get_header_hash(3) == chain.blocks[3].hash


def test_a_damaged_directory_is_refused(chain: CertifiedChain, tmp_path: Path) -> None:
    store = LightStore(tmp_path)
    state = chain.follow(chain.start_light_state(), up_to=2)
    store.save(state, [chain.blocks[1].hash, chain.blocks[2].hash])
    hashes = (tmp_path / HASHES_FILE).read_bytes()
    (tmp_path / HASHES_FILE).write_bytes(hashes[:32])
    with pytest.raises(StorageError, match="damaged"):
        store.load()
    (tmp_path / HASHES_FILE).write_bytes(hashes[:32] + bytes(32))
    with pytest.raises(StorageError, match="does not end with"):
        store.load()
    (tmp_path / STATE_FILE).write_bytes(b"not a state")
    with pytest.raises(LightError) as refused:
        store.load()
    assert refused.value.check == "format"


def test_evidence_is_kept(tmp_path: Path) -> None:
    path = LightStore(tmp_path).save_evidence(7, {"header": "aa", "certificate": "bb"})
    assert json.loads(path.read_text()) == {"header": "aa", "certificate": "bb"}
    assert path.parent.name == "evidence"
