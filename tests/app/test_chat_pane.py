"""The chat pane on its own: each turn is a paragraph of plain text, the streamed answer too."""

from __future__ import annotations

from iadgpt_desktop.ui.chat_pane import FIRST_QUESTION, ChatPane


def _pane(qtbot) -> ChatPane:
    pane = ChatPane()
    qtbot.addWidget(pane)
    pane.set_inspection(11, "/tmp/part.png", "Yes, there is a defect at the right.", [], "#11 part.png")
    return pane


def _lines(pane: ChatPane) -> list[str]:
    return pane.transcript.toPlainText().split("\n")


def test_the_streamed_answer_starts_on_a_line_of_its_own(qtbot) -> None:
    pane = _pane(qtbot)
    asked = []
    pane.ask.connect(lambda *args: asked.append(args))
    pane.input.setText("where is the defect?")
    pane.send()
    assert asked and asked[0][3] == "where is the defect?"
    assert _lines(pane)[-2:] == ["You: where is the defect?", "IAD-GPT: "]
    pane.append_token(11, "At the ")
    pane.append_token(11, "right.")
    assert _lines(pane)[-2:] == ["You: where is the defect?", "IAD-GPT: At the right."]
    pane.finish(11, "At the right.", cancelled=False)
    assert _lines(pane) == [f"You: {FIRST_QUESTION}", "IAD-GPT: Yes, there is a defect at the right.",
                            "You: where is the defect?", "IAD-GPT: At the right."]


def test_questions_and_answers_are_shown_as_plain_text_never_html(qtbot) -> None:
    pane = _pane(qtbot)
    pane.input.setText("is <b>this</b> &amp; <img src=x> bold?")
    pane.send()
    pane.append_token(11, "<i>no</i>")
    assert _lines(pane)[-2:] == ["You: is <b>this</b> &amp; <img src=x> bold?", "IAD-GPT: <i>no</i>"]
    pane.finish(11, "<i>no</i>", cancelled=False)
    assert _lines(pane)[-1] == "IAD-GPT: <i>no</i>"
    assert "<img" not in pane.transcript.toHtml().split("<body", 1)[1].replace("&lt;img", "")


def test_a_failed_answer_says_why_on_its_own_line_and_gives_the_question_back(qtbot) -> None:
    pane = _pane(qtbot)
    pane.input.setText("how big?")
    pane.send()
    pane.fail(11, "the model <stopped>")
    assert _lines(pane)[-1] == "Not answered: the model <stopped>"
    assert "how big?" not in pane.transcript.toPlainText() and pane.input.text() == "how big?"
