"""The codes the pages show as words (states, priorities, roles, trades, alarm types, notice
kinds, photo stages) and the API's error messages that carry values, marked for the message
catalogue (api.i18n, api/locale/*.po): ``N_`` only marks a msgid for extraction
(``make messages``); the text is looked up at run time (``t("state:on_site")`` in the
pages, the error handler for the API). A code's msgid is ``kind:code``; its English text is in
the en catalogue, its Chinese in zh_CN."""

from __future__ import annotations


def N_(msgid: str) -> str:
    return msgid


WORDS = (
    # work-order states
    N_("state:open"), N_("state:assigned"), N_("state:accepted"), N_("state:on_site"),
    N_("state:resolved"), N_("state:closed"), N_("state:cancelled"),
    # alarm states (ISA-18.2)
    N_("state:unack"), N_("state:ack"), N_("state:rtn_unack"), N_("state:normal"),
    # device states, notices
    N_("state:online"), N_("state:offline"), N_("state:unknown"), N_("state:draft"),
    N_("state:published"),
    # a device on the duty room's building tiles with an open alarm
    N_("state:alarm"),
    N_("priority:critical"), N_("priority:high"), N_("priority:medium"), N_("priority:low"),
    N_("role:operator"), N_("role:technician"), N_("role:manager"), N_("role:admin"),
    N_("trade:elevator"), N_("trade:plumbing"), N_("trade:electrical"), N_("trade:fire"),
    N_("trade:general"),
    N_("kind:power"), N_("kind:water"), N_("kind:gas"), N_("kind:other"),
    N_("stage:before"), N_("stage:after"), N_("stage:other"),
    N_("alarm:power_outage"), N_("alarm:entrapment"), N_("alarm:door_open_while_moving"),
    N_("alarm:overtravel"), N_("alarm:stopped_outside_door_zone"),
    N_("alarm:elevator_fault"), N_("alarm:water_outage"), N_("alarm:tank_level_low"),
    N_("alarm:pump_fault"), N_("alarm:vfd_fault"), N_("alarm:low_pressure"),
    N_("alarm:high_pressure"), N_("alarm:fire_alarm"), N_("alarm:fire"),
    N_("alarm:fire_trouble"), N_("alarm:fire_zone_fault"), N_("alarm:fire_supervisory"),
    N_("alarm:gateway_offline"),
    N_("alarm:device_offline"), N_("alarm:water_leak"), N_("alarm:flooding"),
    N_("alarm:gas_leak"), N_("alarm:gas_outage"),
    N_("deadline:accept"), N_("deadline:arrive"), N_("deadline:resolve"),
    N_("type:elevator"), N_("type:pump_set"), N_("type:switchgear"), N_("type:fire_panel"),
    N_("quality:good"), N_("quality:bad"), N_("quality:stale"),
    # what a device says of a point beside its quality (BACnet status flags and reliability)
    N_("flag:in-alarm"), N_("flag:fault"), N_("flag:overridden"), N_("flag:out-of-service"),
    N_("flag:no-sensor"), N_("flag:over-range"), N_("flag:under-range"), N_("flag:open-loop"),
    N_("flag:shorted-loop"), N_("flag:no-output"), N_("flag:unreliable-other"),
    N_("flag:process-error"), N_("flag:configuration-error"),
    N_("flag:communication-failure"), N_("flag:member-fault"),
    N_("category:leak"), N_("category:no_water"), N_("category:no_power"),
    N_("category:elevator_fault"), N_("category:lighting"), N_("category:door_access"),
    N_("category:fire_equipment"), N_("category:other"),
    # work-order timeline events
    N_("event:created"), N_("event:assigned"), N_("event:accepted"), N_("event:on_site"),
    N_("event:resolved"), N_("event:closed"), N_("event:cancelled"), N_("event:open"),
    N_("event:step_done"), N_("event:linked_repeat"), N_("event:unassigned"),
    N_("event:escalated"), N_("event:reopened"), N_("event:declined"),
    N_("action:roster.update"), N_("action:roster.swap"), N_("action:roster.swap_cancel"),
)

# Strings the pages' scripts pass to t() through a variable (so no extractor sees them).
PAGE_WORDS = (
    N_("Accept"), N_("Arrived"), N_("Resolve"),
    N_("MTTA of alarms"), N_("MTTA of orders"), N_("MTTR"), N_("SLA accept"), N_("SLA arrive"),
    N_("SLA resolve"), N_("PM compliance"), N_("Work orders"), N_("Alarms"),
    N_("annunciated"), N_("per operator per 10 min (avg)"), N_("per 10 min (peak)"),
    N_("floods (>10 in 10 min)"), N_("share of alarms in floods"), N_("chattering points"),
    N_("stale (active > 24 h)"),
)

ERRORS = (
    N_("%(kind)s %(key)s not found"),
    N_("alarm"), N_("work order"), N_("device"), N_("site"), N_("building"), N_("notice"),
    N_("handover"), N_("attachment"), N_("swap"), N_("roster"), N_("user"), N_("point"),
    N_("procedure"),
    N_("not authenticated: send Authorization: Bearer <token>"),
    N_("invalid or expired token"),
    N_("incorrect username or password"),
    N_("role %(role)s may not do this (needs %(roles)s)"),
    N_("the order is assigned to %(who)s, not to you"),
    N_("a technician cannot move an order to %(state)s"),
    N_("only the technician on the order moves it to %(state)s"),
    N_("only the technician on the order reports arrival"),
    N_("the next shift acknowledges a handover, not the one who wrote it"),
    N_("handover %(id)s is already acknowledged"),
    N_("user %(name)s already exists"),
    N_("an admin cannot deactivate or demote themself"),
    N_("database unavailable"),
    N_("invalid request"),
    N_("Field required"),
    N_("work order %(id)s: cannot go from %(from)s to %(to)s (allowed: %(allowed)s)"),
    N_("work order %(id)s: required steps not done: %(steps)s"),
    N_("work order %(id)s: no such work order"),
    N_("work order %(id)s: no step %(seq)s"),
    N_("alarm %(id)s: cannot %(action)s an alarm in state %(state)s"),
    N_("alarm %(id)s: %(action)s needs a comment saying why"),
    N_("notice %(id)s is closed"),
    N_("too many failed sign-ins: %(what)s, try again in %(s)s s"), N_("locked"), N_("delayed"),
    N_("no active user %(name)s to assign"), N_("%(name)s is a %(role)s, not a technician"),
    N_("%(name)s does not work at %(site)s"), N_("device %(device)s is not on site %(site)s"),
    N_("not staff of site %(site)s: %(names)s"), N_("work order %(id)s has no step %(seq)s"),
    N_("swap %(id)s is already cancelled"), N_("unknown time zone %(tz)s"),
    N_("%(name)s is empty"), N_("%(name)s is %(size)s MB; the limit is %(limit)s MB"),
    N_("%(name)s is not a JPEG, PNG or WebP photos, or PDF documents (checked by its content)"),
    N_("Idempotency-Key already used for another request"), N_("request in progress: retry"),
    N_("Not Found"), N_("Method Not Allowed"),
    # pydantic's messages of the API's 422 answers, the common ones
    N_("String should have at least %(n)s characters"),
    N_("String should have at most %(n)s characters"),
    N_("String should match pattern '%(pattern)s'"), N_("Input should be a valid integer"),
    N_("Input should be a valid integer, unable to parse string as an integer"),
    N_("Input should be greater than or equal to %(n)s"),
    N_("Input should be less than or equal to %(n)s"), N_("Input should be %(values)s"),
    N_("Extra inputs are not permitted"), N_("Input should be a valid boolean"),
    N_("Input should be a valid datetime"), N_("Input should be a valid string"),
)
