"""Quadrature rules on [0, 1] for the path integral of integrated gradients.

- ``gausslegendre``: the ``m`` Gauss–Legendre nodes ``t_k`` and weights ``v_k`` on [−1, 1] (numpy's
  ``leggauss``) mapped to [0, 1]: ``α_k = (t_k + 1)/2``, ``w_k = v_k/2``; exact for polynomials of degree
  ``2m − 1``. Nodes of different ``m`` are not nested.
- ``riemann_right``: ``α_k = k/m``, ``w_k = 1/m``.
- ``patterson``: the nested Gauss–Kronrod–Patterson rules of QUADPACK's QNG (Piessens et al. 1983):
  the 10-point Gauss rule (degree 19), its 21-point Kronrod extension (degree 31; Kronrod 1965) and
  the 43- and 87-point Patterson extensions (degrees 64 and 130; Patterson 1968). Each rule contains
  every node of the smaller ones and adds new ones, so going from one size to the next evaluates only
  the new nodes; the weights change with the size. The nodes are ordered so that the first ``m`` of
  a larger rule are the nodes of the ``m``-point rule.

The constants are QUADPACK's (``dqng.f``, public domain, computed with 101-digit arithmetic by
L. W. Fullerton, Bell Labs, 1981), given on [−1, 1] as the positive abscissae of each new group (the rules
are symmetric; the 21-point rule adds the centre 0).

References:
    Piessens, de Doncker-Kapenga, Überhuber & Kahaner (1983), "QUADPACK: A Subroutine Package for
    Automatic Integration", Springer.
    Kronrod (1965), "Nodes and Weights of Quadrature Formulas", Consultants Bureau.
    Patterson (1968), "The optimum addition of points to quadrature formulae", Math. Comp. 22: 847–856.
    https://doi.org/10.1090/S0025-5718-68-99866-9
"""

from __future__ import annotations

import numpy as np

from tasks.config import PATTERSON_SIZES, IntegrationRule

# Positive abscissae on [-1, 1]: X1, the 10-point Gauss nodes; X2, added by the 21-point rule (with the
# centre); X3, added by the 43-point rule; X4, added by the 87-point rule.
X1 = (0.97390652851717172007796, 0.86506336668898451073210, 0.67940956829902440623433, 0.43339539412924719079927,
      0.14887433898163121088483)  # fmt: skip
X2 = (0.99565716302580808073553, 0.93015749135570822600121, 0.78081772658641689706372, 0.56275713466860468333900,
      0.29439286270146019813113)  # fmt: skip
X3 = (0.99933336090193208139410, 0.98743340290808886979596, 0.95480793481426629925792, 0.90014869574832829362510,
      0.82519831498311415084707, 0.73214838898930498261235, 0.62284797053772523864116, 0.49947957407105649995222,
      0.36490166134658076804399, 0.22225491977660129649826, 0.07465061746138332204391)  # fmt: skip
X4 = (0.99990297726272923449053, 0.99798989598667874542750, 0.99217549786068722280852, 0.98135816357271277357192,
      0.96505762385838461912828, 0.94316761313367059681642, 0.91580641468550720959183, 0.88322165777131650137212,
      0.84571074846241566660590, 0.80355765803523098278874, 0.75700573068549555832894, 0.70627320978732181982409,
      0.65158946650117792253442, 0.59322337405796108887527, 0.53149360597083193228527, 0.46676362304202284487197,
      0.39942484785921880473210, 0.32987487710618828826505, 0.25850355920216155180228, 0.18569539656834665201592,
      0.11184221317990746817240, 0.03735212339461987081450)  # fmt: skip

# Weights on [-1, 1] of each rule, for its node groups in the order above (one weight per positive
# abscissa, shared by its mirror image), the centre's last.
W10 = (0.06667134430868813759357, 0.14945134915058059314578, 0.21908636251598204399553, 0.26926671930999635509123,
       0.29552422471475287017389)  # fmt: skip
W21_X1 = (0.03255816230796472747882, 0.07503967481091995276704, 0.10938715880229764189921, 0.13470921731147332592805,
          0.14773910490133849137484)  # fmt: skip
W21_X2 = (0.01169463886737187427806, 0.05475589657435199603138, 0.09312545458369760553506, 0.12349197626206585107795,
          0.14277593857706008079709)  # fmt: skip
W21_CENTRE = 0.14944555400291690566494
W43_X1_X2 = (0.01629673428966656492428, 0.03752287612086950146161, 0.05469490205825544214721,
             0.06735541460947808607555, 0.07387019963239395343214, 0.00576855605976979618418,
             0.02737189059324884208128, 0.04656082691042883074334, 0.06174499520144256449624,
             0.07138726726869339776886)  # fmt: skip
W43_X3 = (0.00184447764021241410039, 0.01079868958589165174047, 0.02189536386779542810252, 0.03259746397534568944388,
          0.04216313793519181184763, 0.05074193960018457778019, 0.05837939554261924837548, 0.06474640495144588554469,
          0.06956619791235648452863, 0.07282444147183320815094, 0.07450775101417511827357)  # fmt: skip
W43_CENTRE = 0.07472214751740300559443
W87_X1_X2_X3 = (0.00814837738414917290000, 0.01876143820156282224394, 0.02734745105005228616158,
                0.03367770731163793004658, 0.03693509982042790761459, 0.00288487243021153050133,
                0.01368594602271270188895, 0.02328041350288831112341, 0.03087249761171335867547,
                0.03569363363941877071935, 0.00091528334520224136084, 0.00539928021930047136774,
                0.01094767960111893113433, 0.01629873169678733526267, 0.02108156888920383511243,
                0.02537096976925382724347, 0.02918969775647575250145, 0.03237320246720278968579,
                0.03478309895036514275078, 0.03641222073135178756280, 0.03725387550304770853959)  # fmt: skip
W87_X4 = (0.00027414556376207235002, 0.00180712415505794294834, 0.00409686928275916486446, 0.00675829005184737869982,
          0.00954995767220164653605, 0.01232944765224485369463, 0.01501044734638895237670, 0.01754896798624319109967,
          0.01993803778644088820228, 0.02219493596101228679633, 0.02433914712600080547036, 0.02637450541483920724150,
          0.02828691078877120065997, 0.03005258112809269532252, 0.03164675137143992940459, 0.03305041341997850329079,
          0.03425509970422606178708, 0.03526241266015668103378, 0.03607698962288870118550, 0.03669860449845609449802,
          0.03712054926983257611412, 0.03733422875193504032124)  # fmt: skip
W87_CENTRE = 0.03736107376267902341032


def _mirrored(values: tuple[float, ...]) -> np.ndarray:
    """``(v_1, …, v_n, v_1, …, v_n)``: one value for ``+x`` and the same for ``−x``."""
    return np.concatenate([values, values])


def patterson_rule(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes on [−1, 1] and weights (summing to 2) of the ``size``-point Gauss–Kronrod–Patterson rule.

    Nodes are ordered by the rule that added them (the first 10 are the Gauss rule's, the next 11 the
    21-point rule's, …), so ``patterson_rule(m)[0]`` starts with ``patterson_rule(m')[0]`` for ``m' < m``.
    """
    if size not in PATTERSON_SIZES:
        raise ValueError(f"the patterson rule has {', '.join(map(str, PATTERSON_SIZES))} nodes, not {size}")
    groups = [np.concatenate([X1, -np.asarray(X1)]), np.concatenate([X2, -np.asarray(X2), [0.0]])]
    groups += [np.concatenate([X3, -np.asarray(X3)]), np.concatenate([X4, -np.asarray(X4)])]
    weights = {
        10: [_mirrored(W10)],
        21: [_mirrored(W21_X1), np.concatenate([_mirrored(W21_X2), [W21_CENTRE]])],
        43: [
            _mirrored(W43_X1_X2[:5]),
            np.concatenate([_mirrored(W43_X1_X2[5:]), [W43_CENTRE]]),
            _mirrored(W43_X3),
        ],
        87: [
            _mirrored(W87_X1_X2_X3[:5]),
            np.concatenate([_mirrored(W87_X1_X2_X3[5:10]), [W87_CENTRE]]),
            _mirrored(W87_X1_X2_X3[10:]),
            _mirrored(W87_X4),
        ],
    }[size]
    return np.concatenate(groups[: len(weights)]), np.concatenate(weights)


def integration_nodes(steps: int, rule: IntegrationRule) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``α_k`` in (0, 1] and weights ``w_k`` (summing to 1) of the path integral."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if rule == "patterson":
        nodes, weights = patterson_rule(steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    return np.arange(1, steps + 1) / steps, np.full(steps, 1.0 / steps)


def is_nested(rule: IntegrationRule) -> bool:
    """Whether the rule's smaller sizes' nodes are the first nodes of its larger ones (``patterson``)."""
    return rule == "patterson"
