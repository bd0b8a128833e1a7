"""Synthetic QCT phantom cohort: one-hip CT scans of the proximal femur with exact ground truth.

The public API lives in :mod:`~femurseg.data.synthetic.cohort` and is re-exported here;
the modules, one concept each:

- :mod:`~femurseg.data.synthetic.preset`: size and quality presets (:data:`PRESETS`);
- :mod:`~femurseg.data.synthetic.render`: sampling every parameter of a subject, rendering it;
- :mod:`~femurseg.data.synthetic.femur`, :mod:`~femurseg.data.synthetic.knee`,
  :mod:`~femurseg.data.synthetic.pelvis`, :mod:`~femurseg.data.synthetic.body`: the anatomy;
- :mod:`~femurseg.data.synthetic.tissues`, :mod:`~femurseg.data.synthetic.scanner`: intensities,
  blur, noise and partial volume; :mod:`~femurseg.data.synthetic.sdf` and
  :mod:`~femurseg.data.synthetic.grid`: signed distances and the scan grid;
- :mod:`~femurseg.data.synthetic.measure`: measuring a rendered subject (docs/synthetic.md);
- :mod:`~femurseg.data.synthetic.cohort`: :func:`generate_subject`, :func:`write_cohort`.

See ``docs/synthetic.md``.
"""

from __future__ import annotations

from femurseg.data.synthetic.cohort import (
    GENERATOR_VERSION,
    PRESETS,
    SynthPreset,
    SyntheticCase,
    Tissue,
    generate_subject,
    write_cohort,
)

__all__ = ["SyntheticCase", "SynthPreset", "PRESETS", "GENERATOR_VERSION", "generate_subject", "write_cohort", "Tissue"]
