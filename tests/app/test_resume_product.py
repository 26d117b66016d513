"""A restart inspects the product the operator used last, not the sample or nothing."""

from __future__ import annotations

from iadgpt_desktop.storage import repository
from tests.app.conftest import emitted, start_station


def _use(w, qtbot, name: str) -> int:
    product_id = w.products.create_product(name, "ball_screw_drive")
    assert product_id is not None
    with w.db.Session.begin() as s:
        repository.update_product(s, product_id, mode="trained")
    w.products.refresh()
    w.products.select_product(product_id)
    emitted(qtbot, w.worker.product_changed, w.products.use_for_inspection, lambda p: p.id == product_id)
    return product_id


def test_a_restart_inspects_the_last_product_again(station, qtbot) -> None:
    product_id = _use(station, qtbot, "Spindles line 2")
    assert station.settings.last_product_id == product_id
    settings = station.settings
    station.close()
    again = start_station(qtbot, settings)
    try:
        qtbot.waitUntil(lambda: again.worker.product is not None and again.worker.product.id == product_id,
                        timeout=30000)
        assert again.worker.product.name == "Spindles line 2"
    finally:
        again.close()


def test_a_last_product_whose_bank_is_gone_is_not_resumed_and_says_so(station, qtbot, tmp_path) -> None:
    product_id = _use(station, qtbot, "Housings")
    with station.db.Session.begin() as s:
        repository.update_product(s, product_id, mode="few-shot", memory_bank_path=str(tmp_path / "gone.safetensors"))
    settings = station.settings
    station.close()
    again = start_station(qtbot, settings)
    try:
        qtbot.waitUntil(lambda: "has lost its memory bank" in again.statusBar().currentMessage(), timeout=10000)
        assert "Housings" in again.statusBar().currentMessage()
        assert again.worker.product is None or again.worker.product.id != product_id
    finally:
        again.close()
