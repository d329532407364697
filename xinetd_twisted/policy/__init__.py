"""
Pure access-control and limit decisions (only_from/no_access, access_times,
instances, per_source, cps, max_load, SENSOR list, hosts.allow/deny), with
an injected clock; see L{xinetd_twisted.policy.access.ServicePolicy}.
"""

from xinetd_twisted.policy.access import PolicyContext, Refusal, ServicePolicy

__all__ = ["PolicyContext", "Refusal", "ServicePolicy"]
