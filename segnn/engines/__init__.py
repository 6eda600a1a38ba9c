"""MD engines driven by segnn forces: LAMMPS (``fix external``) and i-PI (socket client)."""
