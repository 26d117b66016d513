"""Image sources: queues, cameras (real video file and a fake capture), folders, file lists."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from iadgpt.imageio import load_image
from iadgpt_desktop.workers.sources import (
    CameraSource,
    FileListSource,
    FolderSource,
    Frame,
    NewestFrameQueue,
    OrderedQueue,
    SourceState,
)

VIDEO_FRAMES = 60
VIDEO_FPS = 30.0


def _frame(i: int, source: str = "test") -> Frame:
    return Frame(source=source, index=i, timestamp=time.time(), path=None, image=None)


def _wait_until(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _drain(queue, source, timeout: float = 10.0, per_frame_sleep: float = 0.0) -> list[Frame]:
    """Consume until the source's thread ended and the queue is empty."""
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = queue.get(timeout=0.02)
        if frame is not None:
            frames.append(frame)
            if per_frame_sleep:
                time.sleep(per_frame_sleep)
        elif not source.running and len(queue) == 0:
            break
    return frames


@pytest.fixture(scope="module")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames, 64x48, 30 fps, MJPG in AVI; red in BGR terms, green channel encodes the index."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI here"
    for i in range(VIDEO_FRAMES):
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[:, :, 2] = 220  # red
        bgr[:, :, 1] = i * 4
        writer.write(bgr)
    writer.release()
    return path


@pytest.fixture
def sources():
    """Sources created by a test; stopped at the end even if the test fails."""
    made: list = []
    yield made
    for source in made:
        source.stop(timeout=2.0)


# ------------------------------------------------------------------------------------------
# Queues
# ------------------------------------------------------------------------------------------


def test_newest_frame_queue_keeps_newest_and_counts_drops():
    queue = NewestFrameQueue(capacity=1)
    total = 300
    received: list[int] = []
    done = threading.Event()

    def producer():
        for i in range(total):
            queue.put(_frame(i))
            time.sleep(0.001)
        done.set()

    def consumer():
        while not (done.is_set() and len(queue) == 0):
            frame = queue.get(timeout=0.05)
            if frame is not None:
                received.append(frame.index)
                time.sleep(0.02)  # slow consumer

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert received == sorted(received) and len(set(received)) == len(received)
    assert received[-1] == total - 1  # the newest frame always gets through
    assert queue.dropped > 0
    assert queue.delivered == len(received)
    assert queue.delivered + queue.dropped + len(queue) == total


def test_newest_frame_queue_capacity_get_timeout_and_clear():
    queue = NewestFrameQueue(capacity=3)
    assert queue.get(timeout=0) is None
    assert queue.get(timeout=0.1) is None
    for i in range(5):
        queue.put(_frame(i))  # never blocks
    assert len(queue) == 3 and queue.dropped == 2
    assert queue.get(timeout=0).index == 2  # the oldest of the newest three
    assert queue.clear() == 2
    assert len(queue) == 0 and queue.dropped == 4 and queue.delivered == 1
    with pytest.raises(ValueError):
        NewestFrameQueue(0)


def test_newest_frame_queue_get_wakes_on_put():
    queue = NewestFrameQueue()
    threading.Timer(0.05, lambda: queue.put(_frame(7))).start()
    frame = queue.get(timeout=2.0)
    assert frame is not None and frame.index == 7


def test_ordered_queue_keeps_order_and_blocks_when_full():
    queue = OrderedQueue(maxsize=2)
    assert queue.put(_frame(0)) and queue.put(_frame(1))
    result: list[bool] = []
    putter = threading.Thread(target=lambda: result.append(queue.put(_frame(2))))
    putter.start()
    time.sleep(0.2)
    assert putter.is_alive() and len(queue) == 2  # blocked: full
    assert queue.get(timeout=1).index == 0
    putter.join(2)
    assert not putter.is_alive() and result == [True]
    assert [queue.get(timeout=1).index for _ in range(2)] == [1, 2]
    assert queue.get(timeout=0) is None
    assert queue.delivered == 3 and queue.enqueued == 3 and queue.dropped == 0


def test_ordered_queue_put_unblocks_on_stop():
    queue = OrderedQueue(maxsize=1)
    queue.put(_frame(0))
    stop = threading.Event()
    result: list[bool] = []
    putter = threading.Thread(target=lambda: result.append(queue.put(_frame(1), stop=stop)))
    putter.start()
    time.sleep(0.1)
    assert putter.is_alive()
    stop.set()
    queue.interrupt()
    putter.join(10)
    assert not putter.is_alive()
    assert result == [False] and len(queue) == 1  # the frame was not queued
    # A callable stop condition and a timeout work as well.
    assert queue.put(_frame(2), stop=lambda: True) is False
    assert queue.put(_frame(3), timeout=0.1) is False
    assert len(queue) == 1


# ------------------------------------------------------------------------------------------
# CameraSource on a real video file
# ------------------------------------------------------------------------------------------


def test_video_file_realtime_pacing_rgb_and_finished(video_file, sources):
    queue = NewestFrameQueue(capacity=1)
    states: list[SourceState] = []
    source = CameraSource(str(video_file), queue, on_state=lambda s, m: states.append(s))
    sources.append(source)
    assert source.realtime is True  # the default for files
    t0 = time.monotonic()
    source.start()
    frames = _drain(queue, source)
    elapsed = time.monotonic() - t0
    assert source.state is SourceState.FINISHED
    assert states[0] is SourceState.CONNECTING and SourceState.STREAMING in states
    assert states[-1] is SourceState.FINISHED
    assert source.frames_captured == VIDEO_FRAMES
    # Real-time pacing: 60 frames at 30 fps cannot all arrive in under ~2 s. Only this lower bound is
    # checked; a busy machine makes it slower, never faster, so no upper bound is asserted.
    assert elapsed >= 1.6, f"60 frames at 30 fps came in {elapsed:.2f} s: not paced"  # lower bound only
    assert source.source_fps == pytest.approx(VIDEO_FPS)
    # A fast consumer gets (nearly) every frame; the accounting always balances.
    assert queue.delivered + queue.dropped + len(queue) == source.frames_captured
    assert frames and frames[-1].index == VIDEO_FRAMES - 1  # the newest frame always gets through
    first = frames[0]
    assert first.source == f"camera:{video_file}" and first.path is None
    assert first.image.dtype == np.uint8 and first.image.shape == (48, 64, 3)
    r, g, b = first.image[24, 32].astype(int)
    assert r > 180 and b < 60  # BGR -> RGB: red is channel 0
    assert [f.index for f in frames] == sorted(f.index for f in frames)


def test_video_file_slow_consumer_drops(video_file, sources):
    queue = NewestFrameQueue(capacity=1)
    source = CameraSource(video_file, queue)
    sources.append(source)
    source.start()
    fps_seen = []

    def sample_fps():
        while source.running:
            if source.fps:
                fps_seen.append(source.fps)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample_fps)
    sampler.start()
    frames = _drain(queue, source, per_frame_sleep=0.1)
    sampler.join(2)
    assert source.state is SourceState.FINISHED
    assert source.frames_captured == VIDEO_FRAMES
    assert source.dropped > 0 and source.dropped == queue.dropped
    assert queue.delivered == len(frames) < VIDEO_FRAMES
    assert queue.delivered + queue.dropped + len(queue) == source.frames_captured
    # paced to the file's 30 fps: a busy machine can only make it slower
    assert fps_seen and 0 < np.median(fps_seen) <= 40


def test_video_file_pause_and_resume(video_file, sources):
    queue = NewestFrameQueue(capacity=1)
    states: list[SourceState] = []
    source = CameraSource(video_file, queue, on_state=lambda s, m: states.append(s))
    sources.append(source)
    source.start()
    assert _wait_until(lambda: source.frames_captured >= 10)
    source.pause()
    assert source.state is SourceState.PAUSED
    paused_at = source.frames_captured
    time.sleep(0.3)
    assert source.frames_captured == paused_at  # nothing captured while paused
    assert SourceState.PAUSED in states
    source.resume()
    assert source.state is SourceState.STREAMING
    assert _wait_until(lambda: source.frames_captured > paused_at, timeout=2)
    assert source.join(5)
    assert source.state is SourceState.FINISHED
    assert source.frames_captured == VIDEO_FRAMES  # a file loses no frame to a pause


def test_video_file_not_realtime_loop_and_stop(video_file, sources):
    queue = NewestFrameQueue(capacity=1)
    source = CameraSource(video_file, queue, realtime=False, loop=True)
    sources.append(source)
    source.start()
    assert _wait_until(lambda: source.frames_captured > 2 * VIDEO_FRAMES, timeout=10)
    source.stop()  # returns once the capture thread has ended
    assert source.state is SourceState.STOPPED and not source.running
    indices_ok = source.frames_captured > 2 * VIDEO_FRAMES
    assert indices_ok


def test_missing_video_file_fails(tmp_path, sources):
    source = CameraSource(tmp_path / "nope.avi", NewestFrameQueue())
    sources.append(source)
    source.start()
    assert source.join(5)
    assert source.state is SourceState.FAILED
    assert "nope.avi" in source.last_error and "does not exist" in source.last_error


def test_empty_video_file_says_it_is_empty_not_convert_it(tmp_path, sources):
    empty = tmp_path / "line3.mp4"
    empty.write_bytes(b"")
    source = CameraSource(empty, NewestFrameQueue())
    sources.append(source)
    source.start()
    assert source.join(5)
    assert source.state is SourceState.FAILED
    assert "empty (0 bytes)" in source.last_error and "MP4" not in source.last_error


# ------------------------------------------------------------------------------------------
# CameraSource with a fake capture: reconnecting
# ------------------------------------------------------------------------------------------


class FakeCapture:
    """Stands in for cv2.VideoCapture. `plan[n]` says what the n-th open gives: None (does not
    open), or how many frames it delivers before read() fails (-1: forever)."""

    def __init__(self, plan: list[int | None], log: list):
        self.plan = plan
        self.log = log
        self.opened_index = len([e for e in log if e[0] == "open"])
        self.log.append(("open", self.opened_index))
        self.budget = plan[min(self.opened_index, len(plan) - 1)]
        self.released = False

    def isOpened(self):  # noqa: N802 (cv2's name)
        return self.budget is not None

    def read(self):
        time.sleep(0.002)
        if self.released or self.budget is None or self.budget == 0:
            return False, None
        if self.budget > 0:
            self.budget -= 1
        bgr = np.zeros((8, 8, 3), np.uint8)
        bgr[:, :, 0] = 255  # blue in BGR
        return True, bgr

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True
        self.log.append(("release", self.opened_index))


def _fake_factory(plan):
    log: list = []
    return (lambda spec: FakeCapture(plan, log)), log


def test_camera_reconnects_after_frames_stop(sources):
    # First open: 5 frames then the camera "unplugs"; the second open fails; the third works.
    factory, log = _fake_factory([5, None, -1])
    queue = NewestFrameQueue(capacity=1)
    states: list[tuple[SourceState, str]] = []
    source = CameraSource(0, queue, capture_factory=factory, reconnect_backoff=(0.01, 0.02),
                          on_state=lambda s, m: states.append((s, m)))
    sources.append(source)
    assert source.source_id == "camera:0" and source.kind == "device"
    source.start()
    assert _wait_until(lambda: source.frames_captured > 20)
    assert source.state is SourceState.STREAMING
    assert source.reconnects == 2 and source.last_error is None
    kinds = [s for s, _ in states]
    i = kinds.index(SourceState.RECONNECTING)
    assert kinds[0] is SourceState.CONNECTING and SourceState.STREAMING in kinds[:i]
    assert SourceState.STREAMING in kinds[i:]
    assert "camera 0 stopped sending frames" in states[i][1]
    frame = queue.get(timeout=1)
    assert frame.source == "camera:0" and frame.image[0, 0].tolist() == [0, 0, 255]  # blue in RGB
    source.stop()
    assert source.state is SourceState.STOPPED
    opens = [e for e in log if e[0] == "open"]
    releases = [e for e in log if e[0] == "release"]
    assert len(opens) == 3 and len(releases) == 3  # every capture released, the last one by stop()


def test_camera_fails_after_max_reconnects(sources):
    factory, log = _fake_factory([3, None])  # never comes back
    states: list[SourceState] = []
    source = CameraSource(0, NewestFrameQueue(), capture_factory=factory, reconnect_backoff=(0.01, 0.02, 0.03),
                          max_reconnects=3, on_state=lambda s, m: states.append(s))
    sources.append(source)
    source.start()
    assert source.join(5)
    assert source.state is SourceState.FAILED
    assert source.reconnects == 3 and source.frames_captured == 3
    assert source.last_error == (
        "camera 0 stopped sending frames and did not come back after 3 attempts; check the cable/URL and "
        "open it again with Camera…"
    )
    assert states[-1] is SourceState.FAILED and SourceState.RECONNECTING in states
    source.stop()
    assert source.state is SourceState.FAILED  # stop() keeps the failure visible


def test_camera_that_does_not_open_names_the_button_that_opens_it_again(sources):
    # The Live view has no "Start" button: a camera is started again with its "Camera…" button.
    factory, _log = _fake_factory([None])
    source = CameraSource(0, NewestFrameQueue(), capture_factory=factory)
    sources.append(source)
    source.start()
    assert source.join(5) and source.state is SourceState.FAILED
    assert source.last_error.endswith("close other camera programs and open it again with Camera…")
    assert "Start" not in source.last_error


def test_camera_pause_live_and_stream_url_redacted(sources):
    factory, _ = _fake_factory([-1])
    queue = NewestFrameQueue()
    source = CameraSource("rtsp://admin:secret@10.0.0.5:554/live", queue, capture_factory=factory)
    sources.append(source)
    assert source.kind == "stream" and "secret" not in source.source_id and source.realtime is False
    source.start()
    assert _wait_until(lambda: source.frames_captured >= 5)
    source.pause()
    at = source.frames_captured
    time.sleep(0.15)
    assert source.frames_captured == at and source.state is SourceState.PAUSED
    source.resume()
    assert _wait_until(lambda: source.frames_captured > at)
    source.stop()
    assert source.state is SourceState.STOPPED


def test_camera_that_does_not_open_fails(sources):
    factory, _ = _fake_factory([None])
    source = CameraSource(3, NewestFrameQueue(), capture_factory=factory)
    sources.append(source)
    source.start()
    assert source.join(5)
    assert source.state is SourceState.FAILED and "camera 3" in source.last_error


# ------------------------------------------------------------------------------------------
# FolderSource and FileListSource
# ------------------------------------------------------------------------------------------


def _write_png(path: Path, value: int) -> None:
    image = np.full((16, 24, 3), value, np.uint8)
    assert cv2.imwrite(str(path), image)


def test_folder_existing_files_in_order_then_slowly_written_file(tmp_path, sources):
    for name, value in [("b.png", 20), ("a.png", 10), ("c.jpg", 30)]:
        _write_png(tmp_path / name, value)
    (tmp_path / "notes.txt").write_text("not an image")
    queue = OrderedQueue(maxsize=4)
    source = FolderSource(tmp_path, queue, poll_interval=0.05, settle_time=0.3)
    sources.append(source)
    source.start()
    got = [queue.get(timeout=3) for _ in range(3)]
    assert [f.path.name for f in got] == ["a.png", "b.png", "c.jpg"]
    assert [f.index for f in got] == [0, 1, 2]
    assert all(f.image is None and f.source == f"folder:{tmp_path}" for f in got)
    assert source.state is SourceState.STREAMING

    # A new file written in chunks over ~1 s is enqueued only once complete.
    ok, encoded = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    payload = encoded.tobytes()
    target = tmp_path / "new.png"
    write_done = threading.Event()

    def slow_writer():
        chunks = 8
        step = len(payload) // chunks + 1
        with open(target, "wb") as fh:
            for k in range(0, len(payload), step):
                fh.write(payload[k:k + step])
                fh.flush()
                os.fsync(fh.fileno())
                time.sleep(0.13)
        write_done.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    frame = queue.get(timeout=5)
    writer.join(5)
    assert frame is not None and frame.path == target
    assert write_done.is_set()  # not picked up before the writer finished
    assert frame.path.stat().st_size == len(payload)
    assert load_image(frame.path).shape == (64, 64, 3)
    assert source.enqueued == 4 and source.pending == 0
    assert queue.get(timeout=0.3) is None  # nothing enqueued twice
    source.stop()
    assert source.state is SourceState.STOPPED and not source.running


def test_folder_skip_and_no_watch_finishes(tmp_path, sources):
    for i in range(5):
        _write_png(tmp_path / f"img{i}.png", i * 10)
    done = {tmp_path / "img1.png", tmp_path / "img3.png"}
    queue = OrderedQueue()
    source = FolderSource(tmp_path, queue, watch=False, settle_time=0.05, skip=lambda p: p in done)
    sources.append(source)
    source.start()
    frames = _drain(queue, source, timeout=5)
    assert [f.path.name for f in frames] == ["img0.png", "img2.png", "img4.png"]
    assert source.state is SourceState.FINISHED and source.skipped == 2 and source.enqueued == 3


def test_folder_empty_file_is_handed_on_and_the_batch_goes_on(tmp_path, sources):
    # Before: a file counted as settled only when non-empty, and one found at start that never settled
    # held back every file after it, so a 0-byte file stopped the batch for good.
    (tmp_path / "a_empty.png").write_bytes(b"")
    _write_png(tmp_path / "b_good.png", 50)
    queue = OrderedQueue()
    source = FolderSource(tmp_path, queue, watch=False, settle_time=0.0)
    sources.append(source)
    source.start()
    frames = _drain(queue, source, timeout=10)
    assert [f.path.name for f in frames] == ["a_empty.png", "b_good.png"]  # the consumer reports the empty one
    assert source.state is SourceState.FINISHED and source.pending == 0


def test_folder_file_still_growing_does_not_hold_back_the_files_after_it(tmp_path, sources):
    growing = tmp_path / "a_growing.png"
    growing.write_bytes(b"\x89PNG")
    _write_png(tmp_path / "b_done.png", 60)
    stop_writing = threading.Event()

    def writer() -> None:  # appends far more often than the settle time, until told to stop
        while not stop_writing.wait(0.02):
            with open(growing, "ab") as fh:
                fh.write(b"x" * 64)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        queue = OrderedQueue()
        source = FolderSource(tmp_path, queue, watch=False, poll_interval=0.05, settle_time=1.0)
        sources.append(source)
        source.start()
        first = queue.get(timeout=15)
        assert first is not None and first.path.name == "b_done.png"
        assert source.pending == 1  # the growing file still waits
    finally:
        stop_writing.set()
        thread.join(5)
    last = queue.get(timeout=15)  # once it stops growing, it settles and comes after
    assert last is not None and last.path == growing
    assert source.join(5) and source.state is SourceState.FINISHED


def test_folder_slow_consumer_throttles_scan_and_stop_joins_quickly(tmp_path, sources):
    for i in range(10):
        _write_png(tmp_path / f"{i:02d}.png", i)
    queue = OrderedQueue(maxsize=2)
    source = FolderSource(tmp_path, queue, settle_time=0.0, poll_interval=0.05)
    sources.append(source)
    source.start()
    assert _wait_until(lambda: len(queue) == 2)
    time.sleep(0.1)
    assert source.enqueued == 2 and len(queue) == 2  # blocked on the full queue
    source.stop()
    assert not source.running and source.state is SourceState.STOPPED


def test_folder_that_disappears_fails(tmp_path, sources):
    folder = tmp_path / "incoming"
    folder.mkdir()
    _write_png(folder / "x.png", 1)
    queue = OrderedQueue()
    source = FolderSource(folder, queue, poll_interval=0.05, settle_time=0.0)
    sources.append(source)
    source.start()
    assert queue.get(timeout=3).path.name == "x.png"
    (folder / "x.png").unlink()
    folder.rmdir()
    assert source.join(3)
    assert source.state is SourceState.FAILED
    assert str(folder) in source.last_error and "no longer reachable" in source.last_error


def test_folder_missing_at_start_fails(tmp_path, sources):
    source = FolderSource(tmp_path / "absent", OrderedQueue())
    sources.append(source)
    source.start()
    assert source.join(3) and source.state is SourceState.FAILED


def test_file_list_source_expands_and_finishes(tmp_path, sources):
    sub = tmp_path / "sub"
    sub.mkdir()
    _write_png(sub / "b.png", 1)
    _write_png(sub / "a.png", 2)
    _write_png(tmp_path / "single.png", 3)
    (sub / "readme.txt").write_text("x")
    queue = OrderedQueue(maxsize=1)
    states: list[SourceState] = []
    source = FileListSource([tmp_path / "single.png", sub], queue, on_state=lambda s, m: states.append(s))
    sources.append(source)
    source.start()
    frames = _drain(queue, source, timeout=5, per_frame_sleep=0.01)
    assert [f.path.name for f in frames] == ["single.png", "a.png", "b.png"]
    assert all(f.source == "files" and f.image is None for f in frames)
    assert source.state is SourceState.FINISHED and states[-1] is SourceState.FINISHED
    assert source.enqueued == 3 and source.total == 3


def test_file_list_source_skips_done_files_and_survives_a_failing_skip(tmp_path, sources):
    """Resuming a batch leaves out what was inspected; a skip() that raises inspects the file."""
    for i, name in enumerate(("a.png", "b.png", "c.png", "d.png")):
        _write_png(tmp_path / name, i)

    def skip(path: Path) -> bool:
        if path.name == "c.png":
            raise RuntimeError("database locked")
        return path.name in ("a.png", "b.png")

    queue = OrderedQueue()
    source = FileListSource([tmp_path], queue, skip=skip)
    sources.append(source)
    source.start()
    frames = _drain(queue, source, timeout=5)
    assert [f.path.name for f in frames] == ["c.png", "d.png"]
    assert [f.index for f in frames] == [0, 1]
    assert source.skipped == 2 and source.enqueued == 2 and source.total == 2
    assert source.state is SourceState.FINISHED


def test_file_list_source_missing_path_fails(tmp_path, sources):
    source = FileListSource([tmp_path / "gone.png"], OrderedQueue())
    sources.append(source)
    source.start()
    assert source.join(3)
    assert source.state is SourceState.FAILED and "gone.png" in source.last_error
