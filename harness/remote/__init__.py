"""Remote relays over SSH: inventory, connections, deploy with rollback, control-port tunnel.

Modules, one job each: ``inventory`` (TOML hosts → frozen records), ``ssh`` (paramiko
connections with verified host keys, commands as Results, many hosts in parallel),
``deploy`` (push/build, atomic switch, verify, roll back), ``tunnel`` (the control port
through the SSH connection, for ``kist-harness collect --ssh``).
"""
