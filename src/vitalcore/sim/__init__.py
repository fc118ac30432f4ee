"""Simulated wearables over MQTT: a ward with scenarios, the quick-start job, a load generator.

- :class:`~vitalcore.sim.wearable.ScenarioWearable`: frames plus ground truth (NIBP cuff,
  battery drain, leads-off episode, accessory hours, command answers), no I/O.
- :class:`~vitalcore.sim.mqtt_device.MqttDevice`: one wearable on gmqtt, store and forward.
- :class:`~vitalcore.sim.ward.Ward`, :func:`~vitalcore.sim.ward.run_ward`: n devices in one loop.
- :mod:`vitalcore.sim.run`: ``python -m vitalcore run`` (server + store + ward);
  :mod:`vitalcore.sim.cli`: ``python -m vitalcore simulate``;
  :mod:`vitalcore.sim.load`: the high-rate load generator.

See docs/server.md, "Simulator". Submodules are imported on use (gmqtt, the store).
"""

from __future__ import annotations
