"""The stance config's entity-marked `text`: standard text-classification scripts read it and `label` as published."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_publish import built, offline_hf  # noqa: F401 (fixtures)

from pipeline.dataset.rows import MARKERS, marked

MARKER = re.compile("|".join(re.escape(m) for m in MARKERS))


@pytest.mark.parametrize(("holder", "target", "expected"), [
    ((0, 6), (14, 18), "[E1]Russia[/E1] warned [E2]NATO[/E2] on Friday"),
    ((14, 18), (0, 6), "[E2]Russia[/E2] warned [E1]NATO[/E1] on Friday"),  # E1 is the holder, whatever the order
    ((0, 13), (0, 6), "[E1][E2]Russia[/E2] warned[/E1] NATO on Friday"),  # nested: the inner span nests
    ((0, 6), (0, 13), "[E2][E1]Russia[/E1] warned[/E2] NATO on Friday"),
    ((0, 6), (0, 6), "[E1][E2]Russia[/E2][/E1] warned NATO on Friday"),
    ((0, 6), (6, 13), "[E1]Russia[/E1][E2] warned[/E2] NATO on Friday"),  # adjacent: one closes before one opens
])
def test_markers_wrap_the_holder_in_e1_and_the_target_in_e2(holder, target, expected: str) -> None:
    text = marked("Russia warned NATO on Friday", holder, target)
    assert text == expected
    assert MARKER.sub("", text) == "Russia warned NATO on Friday"


def test_every_stance_row_marks_its_own_holder_and_target(built: Path, offline_hf) -> None:  # noqa: F811
    for config in ("stance", "stance_silver"):
        rows = [r for split in offline_hf.load_dataset(str(built), config).values() for r in split]
        assert rows
        for r in rows:
            assert MARKER.sub("", r["text"]) == r["sentence"]
            for role, (opening, closing) in (("holder", MARKERS[:2]), ("target", MARKERS[2:])):
                inside = r["text"].split(opening, 1)[1].split(closing, 1)[0]
                assert MARKER.sub("", inside) == r[role], (r["id"], role)


# ---- a faithful minimal excerpt of transformers' examples/pytorch/text-classification/run_classification.py
# (https://github.com/huggingface/transformers, Apache-2.0; main as of 2026): the arguments that name the columns,
# get_label_list, the label renaming and the text-column join of preprocess_function. Only the tokenizer call is
# replaced by a function returning the texts it would tokenize (transformers is not a dependency here).


@dataclass
class DataTrainingArguments:
    text_column_names: str | None = None  # 'If not specified, will use the "sentence" column'
    text_column_delimiter: str | None = " "
    label_column_name: str | None = None  # 'If not specified, will use the "label" column'


def get_label_list(raw_dataset, split="train") -> list[str]:
    if isinstance(raw_dataset[split]["label"][0], list):
        label_list = [label for sample in raw_dataset[split]["label"] for label in sample]
        label_list = list(set(label_list))
    else:
        label_list = raw_dataset[split].unique("label")
    label_list = [str(label) for label in label_list]
    return label_list


def run_classification_inputs(raw_datasets, data_args: DataTrainingArguments):
    """The (text, label id) pairs run_classification.py would tokenize and train on."""
    if data_args.label_column_name is not None and data_args.label_column_name != "label":
        for key in raw_datasets:
            raw_datasets[key] = raw_datasets[key].rename_column(data_args.label_column_name, "label")
    is_regression = raw_datasets["train"].features["label"].dtype in ["float32", "float64"]
    assert not is_regression
    label_list = get_label_list(raw_datasets, split="train")
    for split in ["validation", "test"]:
        if split in raw_datasets:
            val_or_test_labels = get_label_list(raw_datasets, split=split)
            label_list += list(set(val_or_test_labels).difference(set(label_list)))
    label_list.sort()
    label_to_id = {v: i for i, v in enumerate(label_list)}
    tokenizer = lambda texts, **_: {"tokenized": list(texts)}  # noqa: E731 (the one stand-in)

    def preprocess_function(examples):
        if data_args.text_column_names is not None:
            text_column_names = data_args.text_column_names.split(",")
            examples["sentence"] = examples[text_column_names[0]]
            for column in text_column_names[1:]:
                for i in range(len(examples[column])):
                    examples["sentence"][i] += data_args.text_column_delimiter + examples[column][i]
        result = tokenizer(examples["sentence"], padding="max_length", max_length=128, truncation=True)
        if label_to_id is not None and "label" in examples:
            result["label"] = [(label_to_id[str(l)] if l != -1 else -1) for l in examples["label"]]  # noqa: E741
        return result

    return raw_datasets.map(preprocess_function, batched=True), label_list
# ---- end of the excerpt


def test_run_classification_reads_the_marked_text_and_the_label_as_published(built: Path, offline_hf) -> None:  # noqa: F811
    raw = offline_hf.load_dataset(str(built), "stance")
    assert "train" in raw
    names = raw["train"].features["label"].names
    processed, label_list = run_classification_inputs(offline_hf.load_dataset(str(built), "stance"),
                                                      DataTrainingArguments(text_column_names="text"))
    assert sorted(map(int, label_list)) == list(range(len(names))) == [0, 1, 2]  # every class seen, ids kept
    for split in raw:
        assert processed[split]["tokenized"] == raw[split]["text"]
        assert [label_list[i] for i in processed[split]["label"]] == [str(x) for x in raw[split]["label"]]
    marked_texts = [t for split in processed.values() for t in split["tokenized"]]
    assert all(t.count("[E1]") >= 1 and "[E2]" in t for t in marked_texts)
    # without --text_column_names the script reads `sentence`, which has no markers: the card says to name `text`
    default, _ = run_classification_inputs(offline_hf.load_dataset(str(built), "stance"), DataTrainingArguments())
    assert not any(MARKER.search(t) for split in default.values() for t in split["tokenized"])
