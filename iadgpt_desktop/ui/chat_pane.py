"""Chat pane: multi-turn questions about the selected inspection, answers streamed token by token.

The transcript is built with a text cursor, one paragraph per turn: the speaker's name in a bold
colour, then the text inserted as plain text, so neither a question nor an answer is ever read as
HTML, and the answer being streamed starts a paragraph of its own.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QTextBrowser, QVBoxLayout, QWidget

FIRST_QUESTION = "Is there any anomaly in the image?"
SPEAKERS = {"user": ("You", "#1565c0"), "assistant": ("IAD-GPT", "#2e7d32")}
FAILED_COLOUR = "#c62828"
TURN_SPACING_PX = 8


def _format(colour: str | None = None, bold: bool = False) -> QTextCharFormat:
    fmt = QTextCharFormat()
    if colour is not None:
        fmt.setForeground(QColor(colour))
    fmt.setFontWeight(QFont.Weight.Bold if bold else QFont.Weight.Normal)
    return fmt


class ChatPane(QWidget):
    ask = Signal(int, str, object, str)  # inspection id, image path, history, question
    stop_requested = Signal()
    typing = Signal()  # the operator started a question: the Live view stops following new results

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.inspection_id: int | None = None
        self.image_path = ""
        self.history: list[dict[str, str]] = []
        self._streaming = ""
        self.title = QLabel("No inspection selected")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setWordWrap(True)
        self.transcript = QTextBrowser()
        self.input = QLineEdit()
        self.input.setPlaceholderText("Ask: where is it? what kind? how big?")
        self.input.returnPressed.connect(self.send)
        self.input.textEdited.connect(lambda _text: self.typing.emit())
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_requested.emit)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.send_button)
        row.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.transcript, 1)
        layout.addWidget(self.input)  # its own line: the whole placeholder reads in a narrow pane
        layout.addLayout(row)
        self._set_busy(False)
        self.send_button.setEnabled(False)

    def set_inspection(self, inspection_id: int | None, image_path: str, answer: str,
                       messages: list[dict[str, str]], label: str = "") -> None:
        """Show an inspection's conversation: the first question and answer, then the stored turns.

        `label` names the part as the operator knows it ("#39 pitting_124.png")."""
        if inspection_id is not None and inspection_id == self.inspection_id and self.stop_button.isEnabled():
            return  # the same part, an answer streaming: keep it
        self.inspection_id = inspection_id
        self.image_path = image_path
        self.history = [{"role": "user", "content": FIRST_QUESTION}, {"role": "assistant", "content": answer}]
        self.history += [{"role": m["role"], "content": m["content"]} for m in messages]
        if inspection_id is None:
            self.title.setText("This result is not saved yet: questions can be asked once it is stored")
        else:
            self.title.setText(f"Asking about {label or f'#{inspection_id}'}")
        self._render()
        self._set_busy(False)

    def _render(self) -> None:
        self.transcript.clear()
        for m in self.history:
            self._add_turn(m["role"], m["content"])
        self.transcript.moveCursor(QTextCursor.MoveOperation.End)

    def _add_turn(self, role: str, text: str) -> None:
        """A paragraph of its own: the speaker in bold colour, then `text` as plain text."""
        who, colour = SPEAKERS.get(role, SPEAKERS["assistant"])
        self._add_paragraph(f"{who}: ", _format(colour, bold=True), text, _format())

    def _add_paragraph(self, head: str, head_format: QTextCharFormat, text: str, text_format: QTextCharFormat) -> None:
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not self.transcript.document().isEmpty():
            spaced = QTextBlockFormat()
            spaced.setTopMargin(TURN_SPACING_PX)
            cursor.insertBlock(spaced)
        cursor.insertText(head, head_format)
        cursor.insertText(text, text_format)
        self.transcript.setTextCursor(cursor)

    def send(self) -> None:
        question = self.input.text().strip()
        if not question or self.inspection_id is None or self.stop_button.isEnabled():
            return
        self.input.clear()
        self.ask.emit(self.inspection_id, self.image_path, list(self.history), question)
        self.history.append({"role": "user", "content": question})
        self._render()
        self._add_turn("assistant", "")  # the answer streams into this paragraph
        self._streaming = ""
        self._set_busy(True)

    def append_token(self, inspection_id: int, piece: str) -> None:
        if inspection_id != self.inspection_id:
            return
        self._streaming += piece
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(piece, _format())
        self.transcript.setTextCursor(cursor)

    def finish(self, inspection_id: int, answer: str, cancelled: bool) -> None:
        if inspection_id != self.inspection_id:
            return
        self.history.append({"role": "assistant", "content": answer})  # an interrupted one says so itself
        self._render()
        self._set_busy(False)

    def fail(self, inspection_id: int | None = None, message: str = "") -> None:
        """The worker could not answer: drop the unanswered question from the view and say why."""
        if inspection_id is not None and inspection_id != self.inspection_id:
            return
        question = ""
        if self.history and self.history[-1]["role"] == "user":
            question = self.history.pop()["content"]
        self._render()
        if message:
            self._add_paragraph("Not answered: ", _format(FAILED_COLOUR, bold=True), message, _format(FAILED_COLOUR))
        if question and not self.input.text():
            self.input.setText(question)  # ready to ask again
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.send_button.setEnabled(not busy and self.inspection_id is not None)
        self.input.setEnabled(self.inspection_id is not None)
