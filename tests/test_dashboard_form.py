"""The setup form as data (widget values <-> config, presets), the Runs table, and the
dashboard's texts: every text the code uses exists in English and German."""

from __future__ import annotations

import re
from pathlib import Path

import pandas
import pytest

from dashboard import form, history, i18n
from pipelines.errors import UserError
from pipelines.training.config import ExperimentConfig, keys

IDS = ["efficientnet_lite0", "efficientnet_lite1", "mobilenet_v2_100_224"]
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"


def test_default_widget_values_are_the_seminar_config():
    values = form.widget_values(ExperimentConfig(), IDS)
    assert set(keys()) <= set(values)
    assert values["dataset_source"] == "horses_or_humans"
    assert values["train_per_class"] == form.ALL
    assert values["backbone"] == "efficientnet_lite0" and values["backbone_custom"] == ""
    assert values["phase1.lr"] == 1e-3 and values["phase2.lr"] == 1e-5
    assert form.config_from_values(values).to_dict() == ExperimentConfig().to_dict()


def test_every_config_field_round_trips_through_the_widgets():
    config = ExperimentConfig.from_dict(
        {
            "dataset": "/data/flowers",
            "train_per_class": 20,
            "backbone": "https://tfhub.dev/some/model/1",
            "image_size": 96,
            "arms": ["random"],
            "random_policy": "scratch",
            "phase1": {"epochs": 4, "lr": 2e-3},
            "phase2": {"epochs": 1, "lr": 5e-6, "unfreeze_blocks": 3},
            "optimizer": "sgd",
            "batch_size": 8,
            "dropout": 0.35,
            "augment": True,
            "seed": 7,
        }
    )
    values = form.widget_values(config, IDS)
    assert values["backbone"] == form.CUSTOM_BACKBONE
    assert values["dataset_source"] == "folder"
    assert form.config_from_values(values).to_dict() == config.to_dict()


def test_refusals_name_the_field():
    values = form.widget_values(ExperimentConfig(), IDS)
    with pytest.raises(UserError, match="^arms:"):
        form.config_from_values({**values, "arms": []})
    with pytest.raises(UserError, match="^phase2.unfreeze_blocks:"):
        form.config_from_values({**values, "phase2.unfreeze_blocks": 0})
    with pytest.raises(UserError, match="^dataset:"):
        form.config_from_values({**values, "dataset": "  "})
    with pytest.raises(UserError, match="^backbone:"):
        form.config_from_values({**values, "backbone": form.CUSTOM_BACKBONE})
    config = form.config_from_values(values)
    with pytest.raises(UserError, match="^batch_size: 32 is larger than the training set"):
        form.check_against(config, block_count=18, train_images=24)
    with pytest.raises(UserError, match="^phase2.unfreeze_blocks: 2 is more than"):
        form.check_against(config, block_count=1, train_images=100)
    form.check_against(config, block_count=None, train_images=None)


def test_learning_rates_snap_to_log_steps():
    assert form.LR_OPTIONS[0] == 1e-6 and form.LR_OPTIONS[-1] == 0.5
    assert 1e-3 in form.LR_OPTIONS and 1e-5 in form.LR_OPTIONS
    assert form.nearest_lr(3e-4) == 2e-4
    assert form.nearest_lr(4e-4) == 5e-4
    assert form.nearest_lr(0) == 1e-6


@pytest.mark.parametrize(
    ("value", "snapped", "problem"),
    [
        (1e-3, 1e-3, None),
        (3e-4, 2e-4, None),  # in range, between steps: snapped quietly
        (0.0, 1e-6, "phase1.lr: 0.0 is not a positive number; it is set to 1e-06"),
        (-1e-4, 1e-6, "-0.0001 is not a positive number"),
        (float("nan"), 1e-6, "nan is not a positive number"),
        ("fast", 1e-6, "'fast' is not a positive number"),
        (1e9, 0.5, "1e+09 is above the largest step; it is set to 5e-01"),
    ],
)
def test_a_learning_rate_outside_the_slider_is_snapped_and_said(value, snapped, problem):
    got, why = form.snap_lr("phase1.lr", value)
    assert got == snapped
    assert (why is None) if problem is None else (problem in why)


def test_presets_are_valid_and_keep_the_data_set():
    current = ExperimentConfig(dataset="/my/data")
    quick = form.preset_config("quick", current)
    assert quick.dataset == "/my/data"
    assert quick.train_per_class == 50 and quick.image_size == 128
    assert form.preset_config("seminar").to_dict() == ExperimentConfig().to_dict()
    deeper = form.preset_config("deeper")
    assert deeper.phase2.unfreeze_blocks > ExperimentConfig().phase2.unfreeze_blocks
    for name in form.PRESETS:
        values = form.widget_values(form.preset_config(name), IDS)
        assert form.config_from_values(values).to_dict() == form.preset_config(name).to_dict()


def test_train_images_counts_the_few_data_cut():
    report = {"splits": {"train": {"a": 30, "b": 5}}}
    assert form.train_images(report, None) == 35
    assert form.train_images(report, 10) == 15


def test_source_of():
    assert form.source_of("horses_or_humans") == "horses_or_humans"
    assert form.source_of("/x/runs/uploads/abc/dataset") == "upload"
    assert form.source_of("/data/flowers") == "folder"


def test_history_frame_has_a_row_per_run_with_key_hyperparameters():
    from pipelines.runs.run import Run

    config = ExperimentConfig(dataset="/x/runs/uploads/0123456789abcdef/dataset")
    unparsed = {**ExperimentConfig().to_dict(), "renamed_since": 1}
    runs = [
        Run.from_dict(
            {"run_id": "r3", "status": "failed", "created": 1.8e9, "updated": 1.8e9}
            | {"config": unparsed}
        ),
        Run("r2", "running", config, created=1.7e9, updated=1.7e9),
        Run(
            "r1",
            "completed",
            ExperimentConfig(),
            created=1.6e9,
            updated=1.6e9,
            summary={"wall_s": 12.5, "image_size": 224},
        ),
    ]
    frame = history.history_frame(runs, {"r1": {"imagenet": 0.9, "random": 0.5}})
    assert frame.loc[0, "status"] == "failed" and pandas.isna(frame.loc[0, "epochs"])  # listed
    frame = frame.iloc[1:].reset_index(drop=True)
    assert list(frame.columns) == history.COLUMNS
    assert list(frame["run"]) == ["r2", "r1"]
    assert frame.loc[0, "dataset"] == "upload 01234567"
    assert frame.loc[1, "epochs"] == "3 + 2"
    assert frame.loc[1, "best_imagenet"] == 0.9 and frame.loc[1, "image_size"] == 224
    assert frame.loc[1, "wall_s"] == 12.5


# --- texts ----------------------------------------------------------------------------------

_STATIC_KEY = re.compile(r"""\bt\(\s*(?:f?)(["'])([\w.]+)\1""")


def used_keys() -> set[str]:
    """Every literal ``t("key")`` in the dashboard, plus the keys built from known parts."""
    found: set[str] = set()
    for path in DASHBOARD.rglob("*.py"):
        found |= {key for _, key in _STATIC_KEY.findall(path.read_text())}
    from dashboard.figures import DEFAULT_LABELS
    from pipelines.runs.store import STATUSES
    from pipelines.training.config import RANDOM_POLICIES

    found |= {f"help.{k}" for k in keys()}
    found |= {f"field.{k}" for k in keys() if "." in k}
    found |= {f"preset.{n}" for n in form.PRESETS} | {f"preset.{n}.help" for n in form.PRESETS}
    found |= {f"source.{s}" for s in form.SOURCES}
    found |= {f"arm.{a}" for a in ("imagenet", "random")}
    found |= {f"policy.{p}" for p in RANDOM_POLICIES}
    found |= {f"status.{s}" for s in STATUSES}
    found |= {f"phase.{p}" for p in ("feature_extraction", "fine_tuning")}
    found |= {f"view.{v}" for v in ("setup", "run")}
    found |= {f"fig.{k}" for k in DEFAULT_LABELS}
    found |= {f"results.{k}" for k in ("confusion", "misclassified", "try", "downloads")}
    for language in i18n.LANGS:
        found |= {f"control.{s.control}" for s in i18n.explanations(language)[1] if s.control}
    return found


def test_every_text_the_dashboard_uses_exists_in_both_languages():
    texts = i18n.texts()
    missing = sorted(k for k in used_keys() if k not in texts)
    assert not missing, f"texts missing from assets/ui_text.json: {missing}"
    untranslated = sorted(
        k for k, v in texts.items() if set(v) != set(i18n.LANGS) or not all(v.values())
    )
    assert not untranslated


def test_format_fields_match_between_languages():
    field = re.compile(r"\{(\w+)\}")
    for key, value in i18n.texts().items():
        assert set(field.findall(value["en"])) == set(field.findall(value["de"])), key


def test_explanations_cover_the_seminar_concepts_in_both_languages():
    controls = {"arms", "phase2.epochs", "phase2.lr", "near_far", "layer_map"}
    for language in i18n.LANGS:
        intro, sections = i18n.explanations(language)
        assert intro and len(sections) >= 5
        assert controls <= {s.control for s in sections}
        assert all(s.title and s.body and "<!--" not in s.body for s in sections)
    en, de = (i18n.explanations(lang)[1] for lang in ("en", "de"))
    assert [s.control for s in en] == [s.control for s in de]


# The seminar's rule on how many pretrained layers to take over (and Yosinski et al., NIPS
# 2014): take over the lower layers; the more similar source and target, the more layers;
# for distant data the upper, ImageNet-specific blocks are the ones not to take over as they
# are; dissimilar data can transfer negatively. An edit that inverts it fails here.
SEMINAR_PHRASES = {
    "en": {
        "How many layers to take over": [
            "take over the lower layers",
            "the more similar source and target, the more layers",
            "upper, ImageNet-specific blocks are the ones *not* to take over",
            "negative transfer",
            "Yosinski",
            "reuse_blocks",
        ],
        "Feature extraction, then fine-tuning": [
            "Always start here",
            "only *after* the previous steps",
            "deep layers near the input",
            "lower learning rate",
        ],
        "Why a lower learning rate": ["10–100× lower"],
        "Transfer learning vs": ["group A", "group B", "random weights"],
        "HydraNets": ["one backbone", "many heads"],
    },
    "de": {
        "Wie viele Schichten übernehmen": [
            "die unteren Schichten übernehmen",
            "je ähnlicher Quelle und Ziel, desto mehr Schichten",
            "ImageNet-spezifischen Blöcke diejenigen, die man *nicht* unverändert übernimmt",
            "negativer Transfer",
            "Yosinski",
            "reuse_blocks",
        ],
        "Erst Feature-Extraktion, dann Feintuning": [
            "Immer hier anfangen",
            "*nachdem* die vorherigen Schritte",
            "tiefen Schichten nahe am",
            "kleinerer Lernrate",
        ],
        "Warum eine kleinere Lernrate": ["100-mal"],
        "Transfer Learning und": ["Gruppe A", "Gruppe B", "Zufallsgewichten"],
        "HydraNets": ["ein gemeinsames Backbone", "vielen Köpfen"],
    },
}
# Advice the seminar contradicts: fewer (or no) unfrozen blocks *because* the data differ.
INVERTED = [
    r"unfreeze (only )?(the top )?(one|1|two|2|fewer)\b[^.]*(differ|far|distant)",
    r"(differ|far|distant)[^.]*unfreeze (only )?(the top )?(one|1|two|2|fewer|none)",
    r"Unfreeze fewer blocks when",
    r"(anders|unterscheiden|fern)[^.]*nur die obersten (ein|zwei)",
    r"Weniger Blöcke auftauen, wenn",
]


@pytest.mark.parametrize("language", ["en", "de"])
def test_explanations_say_what_the_seminar_says(language):
    _, sections = i18n.explanations(language)
    for title, phrases in SEMINAR_PHRASES[language].items():
        (section,) = [s for s in sections if s.title.startswith(title) or title in s.title]
        text = " ".join(section.body.split())  # line breaks as spaces
        for phrase in phrases:
            assert phrase.lower() in text.lower(), (language, section.title, phrase)
    whole = " ".join(" ".join(f"{s.title}. {s.body}".split()) for s in sections)
    for pattern in INVERTED:
        assert not re.search(pattern, whole, re.IGNORECASE), (language, pattern)
    far = next(s for s in sections if s.control == "near_far")
    assert "How many layers" in far.title or "Wie viele Schichten" in far.title
    # its button goes to the "Near or far" preset, the series that measures the claim


def test_ui_help_texts_do_not_invert_the_lesson():
    texts = i18n.texts()
    for key in ("help.phase2.unfreeze_blocks", "help.reuse_blocks"):
        for language in ("en", "de"):
            text = texts[key][language]
            assert not re.search(r"(Fewer|Weniger),? (when|wenn)", text), (key, text)
    assert "the more blocks to take over" in texts["help.reuse_blocks"]["en"]
    assert "desto mehr Blöcke übernehmen" in texts["help.reuse_blocks"]["de"]
