"""The registry of Table 1 methods: name -> head kind, loss, whether the tumour mask is used.

Every method is one frozen :class:`Method`; the methods differ only by their entry, never by their
training code (:func:`maskllp.training.proportion.train_proportion_model` trains every ``maps``,
``class`` and ``ordinal`` method; ``det`` goes through stage 1's three-class detector).

========================  ==============================  ========  ====  ===========================
name                      Table 1                         head      mask  loss
========================  ==============================  ========  ====  ===========================
``det``                   Det                             count     no    (stage 1, 3-class, counted)
``class``                 Class                           class     no    5-way cross-entropy
``o-reg``                 O-Reg                           ordinal   no    cumulative BCE
``prop-nomask``           Prop w/o mask                   maps      no    KL proportion loss
``ours-nomask``           Ours w/o mask                   maps      no    weighted focal prop. loss
``lpi``                   LPI loss                        maps      yes   interval (LPI) loss
``prop``                  Prop                            maps      yes   KL proportion loss
``wprop``                 WProp                           maps      yes   1/width-weighted KL
``wprop-listnet``         WProp + ListNet                 maps      yes   WProp + ListNet
``focalprop``             FocalProp                       maps      yes   focal prop. loss, gamma 2
``ours``                  Ours                            maps      yes   weighted focal prop. loss
========================  ==============================  ========  ====  ===========================

"w/o mask" methods use the same map network with M = 1 over the whole input image (the paper: they
"produce the PD-L1 rate directly from the entire image"; the white padding that squares a core is
glass like the background around any round core), so they differ from their masked twins only by
the mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from maskllp.errors import InputError
from maskllp.intervals import IntervalScheme
from maskllp.proportion import losses
from maskllp.proportion.config import LossConfig
from maskllp.proportion.network import NetworkSpec

HeadKind = Literal["maps", "class", "ordinal", "count"]
LossFactory = Callable[[IntervalScheme, LossConfig], nn.Module]


@dataclass(frozen=True)
class Method:
    """One row of Table 1."""

    name: str
    display_name: str
    head: HeadKind
    loss_factory: LossFactory | None
    """Builds the loss from the interval scheme and ``[proportion.loss]``; None for ``det``."""
    uses_mask: bool

    @property
    def predicts_proportion(self) -> bool:
        """Whether the method estimates a proportion (map and count heads) or only an interval."""
        return self.head in ("maps", "count")

    def build_loss(self, scheme: IntervalScheme, cfg: LossConfig) -> nn.Module:
        """The method's loss for ``scheme``; InputError when ``[proportion.loss]`` does not fit it."""
        if self.loss_factory is None:
            raise ValueError(f"method {self.name!r} is not trained with a stage-2 loss")
        try:
            return self.loss_factory(scheme, cfg)
        except ValueError as e:
            raise InputError(None, f"{e} (scheme {scheme.name!r} has {len(scheme)} intervals)",
                             "section proportion.loss") from None

    def network_spec(self, n_intervals: int) -> NetworkSpec:
        """The stage-2 network of this method for a scheme of ``n_intervals`` intervals."""
        if self.head == "maps":
            return NetworkSpec("maps", 2, masked=self.uses_mask)
        if self.head == "class":
            return NetworkSpec("class", n_intervals)
        if self.head == "ordinal":
            return NetworkSpec("ordinal", n_intervals - 1)
        raise ValueError(f"method {self.name!r} has no stage-2 network (it counts stage-1 detections)")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("det", "Det", "count", None, False),
        Method("class", "Class", "class", losses.class_loss, False),
        Method("o-reg", "O-Reg", "ordinal", losses.ordinal_loss, False),
        Method("prop-nomask", "Prop w/o mask", "maps", losses.proportion_loss, False),
        Method("ours-nomask", "Ours w/o mask", "maps", losses.weighted_focal_proportion_loss, False),
        Method("lpi", "LPI loss", "maps", losses.interval_loss, True),
        Method("prop", "Prop", "maps", losses.proportion_loss, True),
        Method("wprop", "WProp", "maps", losses.weighted_proportion_loss, True),
        Method("wprop-listnet", "WProp + ListNet", "maps", losses.wprop_listnet_loss, True),
        Method("focalprop", "FocalProp", "maps", losses.focal_proportion_loss, True),
        Method("ours", "Ours", "maps", losses.weighted_focal_proportion_loss, True),
    )
}
"""Every Table 1 method, in the order of the table."""


def get_method(name: str) -> Method:
    """The registry entry called ``name`` (case-insensitive); InputError for an unknown name."""
    key = name.strip().lower()
    if key not in METHODS:
        raise InputError(None, f"unknown method {name!r} (known: {', '.join(METHODS)})", "method")
    return METHODS[key]


def parse_methods(text: str) -> list[Method]:
    """``"all"`` or a comma-separated list of names -> methods, in the order given, no repeats."""
    names = [t for t in (s.strip() for s in text.split(",")) if t]
    if not names:
        raise InputError(None, "no method given (names, comma-separated, or 'all')", "--methods")
    if any(n.lower() == "all" for n in names):
        return list(METHODS.values())
    out: list[Method] = []
    for n in names:
        m = get_method(n)
        if m not in out:
            out.append(m)
    return out
