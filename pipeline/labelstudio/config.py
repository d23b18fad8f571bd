"""The Label Studio labeling config generated from params, and the guidelines as the project's instructions."""

from __future__ import annotations

import colorsys
import hashlib
from pathlib import Path
from xml.etree import ElementTree as ET

from markdown_it import MarkdownIt

from pipeline.common.errors import InputError
from pipeline.labelstudio.params import Config

FROM_NAME = "label"
TO_NAME = "text"


def _palette_colour(label: str) -> str:
    """A stable colour for a label without one in params (hue from a hash of the name)."""
    hue = int(hashlib.sha256(label.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hls_to_rgb(hue, 0.6, 0.65)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def label_config(cfg: Config) -> str:
    """The Label Studio labeling config XML: metadata header, text, entity labels, stance relations."""
    view = ET.Element("View")
    meta = ET.SubElement(view, "View", style="margin-bottom: 0.5em")
    ET.SubElement(meta, "Header", value="$title", size="4")
    ET.SubElement(meta, "Header", value="$byline", size="6", style="color: #666; font-weight: normal")
    labels = ET.SubElement(view, "Labels", name=FROM_NAME, toName=TO_NAME, showInline="true")
    for name in cfg.entity_labels:
        attrs = {"value": name, "background": cfg.ls.entity_colors.get(name) or _palette_colour(name)}
        if name in cfg.ls.entity_hotkeys:
            attrs["hotkey"] = cfg.ls.entity_hotkeys[name]
        ET.SubElement(labels, "Label", attrs)
    # one stance per relation: with several ticked, merge could only report and drop it
    relations = ET.SubElement(view, "Relations", choice="single")
    for name in cfg.stance_labels:
        attrs = {"value": name}
        if name in cfg.ls.stance_colors:
            attrs["background"] = cfg.ls.stance_colors[name]
        ET.SubElement(relations, "Relation", attrs)
    ET.SubElement(view, "Text", name=TO_NAME, value="$text")
    ET.indent(view, space="  ")
    return ET.tostring(view, encoding="unicode")


def instructions_html(markdown_text: str) -> str:
    """The annotation guidelines (Markdown) as the HTML Label Studio shows as the project's instructions."""
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)


def read_guidelines(path: Path) -> str:
    """The annotation guidelines (Markdown)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: guidelines file not found") from None
