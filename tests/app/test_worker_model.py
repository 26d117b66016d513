"""Which model the worker loaded decides the sample product's first-run mode."""

from __future__ import annotations

from iadgpt.config import DEFAULT_PRESET
from iadgpt.imageio import iter_image_files
from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.ui.main_window import SAMPLE_CLASS, SAMPLE_PRODUCT, sample_dir
from iadgpt_desktop.workers.inference import InferenceWorker, ProductInfo


def _worker(tmp_path, **settings) -> InferenceWorker:
    w = InferenceWorker(Settings(device="cpu", data_dir=str(tmp_path / "data"), generate_answers=False, **settings))
    w._open_storage()
    w._load_model()
    return w


def _sample_product(w: InferenceWorker) -> tuple[int, list[str]]:
    with w.db.Session.begin() as s:
        pid = repository.get_or_create_product(s, SAMPLE_PRODUCT, SAMPLE_CLASS)
    product = ProductInfo(pid, SAMPLE_PRODUCT, SAMPLE_CLASS)
    w.set_product(product)
    return product, [str(p) for p in iter_image_files([sample_dir() / "reference"])]


def _mode(w: InferenceWorker, pid: int) -> str:
    with w.db.Session() as s:
        return next(p["mode"] for p in repository.list_products(s) if p["id"] == pid)


def test_untrained_model_gets_a_memory_bank_from_the_references(tmp_path, qtbot) -> None:
    w = _worker(tmp_path, preset="tiny-test")
    try:
        assert not w.inspector.trained
        product, references = _sample_product(w)
        ready = []
        w.bank_ready.connect(ready.append)
        w.build_memory_bank_if_untrained(product, references)
        assert ready and ready[0].product_id == product.id and ready[0].patches > 0 and ready[0].active
        assert _mode(w, product.id) == "few-shot" and w.inspector.memory_bank is not None
    finally:
        w.shutdown()


def test_shipped_builtin_model_serves_its_trained_product_zero_shot(tmp_path, qtbot) -> None:
    w = _worker(tmp_path, preset=DEFAULT_PRESET)
    try:
        assert w.inspector.trained
        product, references = _sample_product(w)
        w.build_memory_bank_if_untrained(product, references)
        assert _mode(w, product.id) == "trained" and w.inspector.memory_bank is None
        assert not (tmp_path / "data" / "memory_banks").exists()
    finally:
        w.shutdown()


def test_broken_weights_folder_is_reported_and_builds_nothing(tmp_path, qtbot) -> None:
    broken = tmp_path / "weights"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json", encoding="utf-8")
    states, failures = [], []
    w = InferenceWorker(Settings(preset="tiny-test", device="cpu", data_dir=str(tmp_path / "data"),
                                 weights_dir=str(broken), generate_answers=False))
    w.model_state.connect(lambda status: states.append((status.state.value, status.message)))
    w.bank_failed.connect(lambda pid, text: failures.append(text))
    w._open_storage()
    w._load_model()
    try:
        assert w.inspector is None
        assert states[-1][0] == "failed" and str(broken) in states[-1][1]
        product, references = _sample_product(w)
        w.build_memory_bank_if_untrained(product, references)
        assert failures == [] and _mode(w, product.id) == "trained"
    finally:
        w.shutdown()


def test_cancel_during_the_coreset_keeps_the_previous_bank(tmp_path, qtbot) -> None:
    from iadgpt_desktop.workers.contract import BankPhase

    w = _worker(tmp_path, preset="tiny-test")
    try:
        product, references = _sample_product(w)
        w.build_memory_bank(product, references)
        previous = w.inspector.memory_bank
        failed = []
        w.bank_failed.connect(lambda pid, text: failed.append(text))
        ready = []
        w.bank_ready.connect(ready.append)
        pause = w.bank_progress.connect(lambda p: w.cancel())  # Pause of the stream: not the bank's Cancel
        w.build_memory_bank(product, references * 20)  # large enough to need a coreset
        assert ready and not failed, "pausing the stream does not cancel a bank being built"
        w.bank_progress.disconnect(pause)
        previous = w.inspector.memory_bank
        w.bank_progress.connect(lambda p: w.cancel_bank() if p.phase is BankPhase.SELECTING else None)
        w.build_memory_bank(product, references * 20)
        assert failed and "cancelled" in failed[0]
        assert w.inspector.memory_bank is previous
    finally:
        w.shutdown()


def test_a_bank_for_the_product_in_use_does_not_rebuild_its_prompts(tmp_path, qtbot) -> None:
    w = _worker(tmp_path, preset="tiny-test")
    try:
        product, references = _sample_product(w)
        calls = []
        real = w.inspector.set_product
        w.inspector.set_product = lambda *a, **k: (calls.append(a), real(*a, **k))
        w.build_memory_bank(product, references)
        assert calls == [], "only the memory bank changed: the text prompts are kept"
        assert w.inspector.memory_bank is not None and w.product.mode == "few-shot"
    finally:
        w.shutdown()
