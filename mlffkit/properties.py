"""Names of the per-structure and per-atom properties, shared by data, models and calculators.

They match ASE's calculator property names so that a dictionary of results can be
handed to an ASE calculator unchanged.
"""

ENERGY = "energy"  #: total potential energy, eV
FORCES = "forces"  #: forces on the atoms, eV/Å, shape (n_atoms, 3)
STRESS = "stress"  #: stress, eV/Å³, Voigt order
POSITIONS = "positions"  #: Cartesian positions, Å
NUMBERS = "numbers"  #: atomic numbers
CELL = "cell"  #: lattice vectors as rows, Å
PBC = "pbc"  #: periodic boundary conditions per lattice vector
CHARGE = "charge"  #: total charge, elementary charges
SPIN = "spin"  #: number of unpaired electrons (2S)
