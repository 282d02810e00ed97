/*
 * operations.h -- the data: the 45 SIM-card operations of the Telnyx API v2,
 * one row each, with the rule tree of their params. Included by exactly one
 * .c file. Facts come from sim-cards-full.json and NOTES.md (telnyx-openapi);
 * spec/conformance_spec.lua checks every row against the document and lists
 * each deliberate difference (its DEVIATIONS table).
 *
 * Conventions:
 *  - Params are one table per call shaped like the API. `page[number]` and
 *    `filter[x]` query params become a top-level `page` / `filter` object
 *    whether the document declares them flat or as one deepObject; the engine
 *    writes them back as filter[x]=v (arrays comma-joined).
 *  - Field order: path params, query params, then body params, each in the
 *    document's order (purchase and register keep their historic order: the
 *    JSON body is written in row order).
 *  - A string with no enum and no format must not be empty (MIN(1)).
 *  - SIM card and SIM card group ids are uuids, also where the document
 *    forgets to say so (the bulk voice body).
 */
#ifndef TSIM_OPERATIONS_H
#define TSIM_OPERATIONS_H

#include "rules.h"

/* --- Shared pieces --- */

/* Enums, in the document's order. */
static const char *const settable_statuses[] = {"enabled", "disabled", "standby", NULL};
/* The list filter also knows unauthorized_imei, which no SIM card status value has. */
static const char *const sim_card_filter_statuses[] = {
  "enabled", "disabled", "standby", "data_limit_exceeded", "unauthorized_imei", NULL};
static const char *const sim_card_sorts[] = {
  "current_billing_period_consumed_data.amount", "-current_billing_period_consumed_data.amount", NULL};
static const char *const data_units[] = {"MB", "GB", NULL};
/* FilterBasicStatusLifecycle: SIM card actions and SIM card group actions alike. */
static const char *const action_statuses[] = {"in-progress", "completed", "failed", NULL};
static const char *const sim_card_action_types[] = {
  "enable", "enable_standby_sim_card", "disable", "set_standby", "remove_public_ip", "set_public_ip", NULL};
static const char *const bulk_action_types[] = {
  "bulk_disable_voice", "bulk_enable_voice", "bulk_set_public_ips", NULL};
static const char *const group_action_types[] = {
  "set_private_wireless_gateway", "remove_private_wireless_gateway",
  "set_wireless_blocklist", "remove_wireless_blocklist", NULL};

/* Array items. */
static const struct rule text_item = { "item", K_STRING, MIN(1) };
static const struct rule uuid_item = { "item", K_STRING, FORMAT(F_UUID) };
static const struct rule filter_status_item = { "item", K_STRING, ONE_OF(sim_card_filter_statuses) };

/* `page`: every list pages by number, 1..n, 1..250 a page (NOTES.md "Results"). */
static const struct rule page_fields[] = {
  { "number", K_INTEGER, MIN(1) },
  { "size", K_INTEGER, MIN(1), MAX(250) },
  END
};

/* A data size, as data_limit (SIM card, SIM card group) and threshold (data
 * usage notification) write it: a decimal string and its unit. Both halves
 * are required: either alone means nothing. */
static const struct rule data_size_fields[] = {
  { "amount", K_STRING, REQUIRED, FORMAT(F_DECIMAL) },
  { "unit", K_STRING, REQUIRED, ONE_OF(data_units) },
  END
};

/* Top-level rows used by many operations. */
#define PATH_ID    { "id", K_STRING, REQUIRED, IN(IN_PATH), FORMAT(F_UUID) }
#define PAGE       { "page", K_OBJECT, IN(IN_QUERY), FIELDS(page_fields) }
#define FILTER(f)  { "filter", K_OBJECT, IN(IN_QUERY), FIELDS(f) }
#define DATA_LIMIT { "data_limit", K_OBJECT, IN(IN_BODY), FIELDS(data_size_fields) }
#define TAGS       { "tags", K_ARRAY, IN(IN_BODY), ITEMS(&text_item) }

/* A row's params when it has nothing but the {id} in its path. */
static const struct rule id_only_params[] = {
  PATH_ID,
  END
};

/* --- Purchase / register: new SIM cards on the account --- */

static const struct rule purchase_esims_params[] = {
  { "amount", K_INTEGER, REQUIRED, IN(IN_BODY), MIN(1) },
  { "sim_card_group_id", K_STRING, IN(IN_BODY), FORMAT(F_UUID) },
  TAGS,
  { "product", K_STRING, IN(IN_BODY), MIN(1) },
  { "whitelabel_name", K_STRING, IN(IN_BODY), FORMAT(F_SPN) },
  { "status", K_STRING, IN(IN_BODY), ONE_OF(settable_statuses) },
  END
};

static const struct rule register_sim_cards_params[] = {
  { "registration_codes", K_ARRAY, REQUIRED, IN(IN_BODY), MIN(1), ITEMS(&text_item) },
  { "sim_card_group_id", K_STRING, IN(IN_BODY), FORMAT(F_UUID) },
  TAGS,
  { "status", K_STRING, IN(IN_BODY), ONE_OF(settable_statuses) },
  END
};

/* --- SIM cards: one card, its actions, its reads, and the bulk forms --- */

static const struct rule sim_card_filter_fields[] = {
  { "iccid", K_STRING, MIN(1) },
  { "msisdn", K_STRING, MIN(1) },
  { "status", K_ARRAY, ITEMS(&filter_status_item) },
  { "tags", K_ARRAY, ITEMS(&text_item) }, /* cards having all of them */
  /* declared flat (filter[sim_card_group_id]) beside the deepObject */
  { "sim_card_group_id", K_STRING, FORMAT(F_UUID) },
  END
};

static const struct rule list_sim_cards_params[] = {
  FILTER(sim_card_filter_fields),
  PAGE,
  { "include_sim_card_group", K_BOOLEAN, IN(IN_QUERY) },
  { "sort", K_STRING, IN(IN_QUERY), ONE_OF(sim_card_sorts) },
  END
};

static const struct rule get_sim_card_params[] = {
  PATH_ID,
  { "include_sim_card_group", K_BOOLEAN, IN(IN_QUERY) },
  { "include_pin_puk_codes", K_BOOLEAN, IN(IN_QUERY) },
  END
};

/* The body is declared as the whole SIMCard; only these four are writable
 * (NOTES.md "Writable fields"). status changes through the actions below. */
static const struct rule update_sim_card_params[] = {
  PATH_ID,
  /* sim.null clears the list; an array replaces it whole */
  { "authorized_imeis", K_ARRAY, NULLABLE, IN(IN_BODY), ITEMS(&text_item) },
  DATA_LIMIT,
  { "sim_card_group_id", K_STRING, IN(IN_BODY), FORMAT(F_UUID) },
  TAGS,
  END
};

static const struct rule delete_sim_card_params[] = {
  PATH_ID,
  { "report_lost", K_BOOLEAN, IN(IN_QUERY) },
  END
};

static const struct rule set_sim_card_public_ip_params[] = {
  PATH_ID,
  { "region_code", K_STRING, IN(IN_QUERY), MIN(1) }, /* see list_wireless_regions */
  END
};

static const struct rule list_wireless_connectivity_logs_params[] = {
  PATH_ID,
  PAGE,
  END
};

static const struct rule validate_registration_codes_params[] = {
  /* required, unlike the document: validating no code asks nothing */
  { "registration_codes", K_ARRAY, REQUIRED, IN(IN_BODY), MIN(1), ITEMS(&text_item) },
  END
};

/* bulk_enable_voice and bulk_disable_voice: every SIM card of one group. */
static const struct rule bulk_voice_params[] = {
  { "sim_card_group_id", K_STRING, REQUIRED, IN(IN_BODY), FORMAT(F_UUID) },
  END
};

static const struct rule bulk_set_public_ips_params[] = {
  { "sim_card_ids", K_ARRAY, REQUIRED, IN(IN_BODY), MIN(1), ITEMS(&uuid_item) },
  END
};

/* --- Actions: the asynchronous SIM card actions and their bulk parents --- */

static const struct rule sim_card_action_filter_fields[] = {
  { "action_type", K_STRING, ONE_OF(sim_card_action_types) },
  { "bulk_sim_card_action_id", K_STRING, FORMAT(F_UUID) },
  { "sim_card_id", K_STRING, FORMAT(F_UUID) },
  { "status", K_STRING, ONE_OF(action_statuses) },
  END
};

static const struct rule list_sim_card_actions_params[] = {
  FILTER(sim_card_action_filter_fields),
  PAGE,
  END
};

static const struct rule bulk_action_filter_fields[] = {
  { "action_type", K_STRING, ONE_OF(bulk_action_types) },
  END
};

static const struct rule list_bulk_sim_card_actions_params[] = {
  PAGE,
  FILTER(bulk_action_filter_fields),
  END
};

/* --- Groups: CRUD, the four asynchronous group actions, and their list --- */

static const struct rule group_filter_fields[] = {
  { "name", K_STRING, MIN(1) },
  { "private_wireless_gateway_id", K_STRING, FORMAT(F_UUID) },
  { "wireless_blocklist_id", K_STRING, FORMAT(F_UUID) },
  END
};

static const struct rule list_sim_card_groups_params[] = {
  PAGE,
  FILTER(group_filter_fields),
  END
};

static const struct rule create_sim_card_group_params[] = {
  DATA_LIMIT,
  { "name", K_STRING, REQUIRED, IN(IN_BODY), MIN(1) },
  END
};

static const struct rule get_sim_card_group_params[] = {
  PATH_ID,
  { "include_iccids", K_BOOLEAN, IN(IN_QUERY) },
  END
};

static const struct rule update_sim_card_group_params[] = {
  PATH_ID,
  DATA_LIMIT,
  { "name", K_STRING, IN(IN_BODY), MIN(1) },
  END
};

static const struct rule set_private_wireless_gateway_params[] = {
  PATH_ID,
  { "private_wireless_gateway_id", K_STRING, REQUIRED, IN(IN_BODY), FORMAT(F_UUID) },
  END
};

static const struct rule set_wireless_blocklist_params[] = {
  PATH_ID,
  { "wireless_blocklist_id", K_STRING, REQUIRED, IN(IN_BODY), FORMAT(F_UUID) },
  END
};

static const struct rule group_action_filter_fields[] = {
  { "sim_card_group_id", K_STRING, FORMAT(F_UUID) },
  { "status", K_STRING, ONE_OF(action_statuses) },
  { "type", K_STRING, ONE_OF(group_action_types) },
  END
};

static const struct rule list_sim_card_group_actions_params[] = {
  PAGE,
  FILTER(group_action_filter_fields),
  END
};

/* --- Orders: physical SIM cards shipped to an address --- */

/* quantity, address_id: preview and create take the same body. */
static const struct rule order_params[] = {
  { "address_id", K_STRING, REQUIRED, IN(IN_BODY), MIN(1) }, /* digits, not a uuid */
  { "quantity", K_INTEGER, REQUIRED, IN(IN_BODY), MIN(1) },
  END
};

/* The dotted names are the wire form: spec3.yml gives the original params as
 * filter[address.country_code], filter[cost.amount], ... */
static const struct rule order_filter_fields[] = {
  { "address.administrative_area", K_STRING, MIN(1) },
  { "address.country_code", K_STRING, MIN(1) },
  { "address.extended_address", K_STRING, MIN(1) },
  { "address.id", K_STRING, MIN(1) },
  { "address.locality", K_STRING, MIN(1) },
  { "address.postal_code", K_STRING, MIN(1) },
  { "address.street_address", K_STRING, MIN(1) },
  { "cost.amount", K_STRING, MIN(1) },
  { "cost.currency", K_STRING, MIN(1) },
  { "created_at", K_STRING, FORMAT(F_DATETIME) },
  { "quantity", K_INTEGER },
  { "updated_at", K_STRING, FORMAT(F_DATETIME) },
  END
};

static const struct rule list_sim_card_orders_params[] = {
  FILTER(order_filter_fields),
  PAGE,
  END
};

/* --- Data-usage notifications: one threshold per SIM card --- */

static const struct rule notification_filter_fields[] = {
  { "sim_card_id", K_STRING, FORMAT(F_UUID) },
  END
};

static const struct rule list_notifications_params[] = {
  PAGE,
  FILTER(notification_filter_fields),
  END
};

static const struct rule create_notification_params[] = {
  { "sim_card_id", K_STRING, REQUIRED, IN(IN_BODY), FORMAT(F_UUID) },
  { "threshold", K_OBJECT, REQUIRED, IN(IN_BODY), FIELDS(data_size_fields) },
  END
};

/* The body is declared as the whole notification; id, record_type and the
 * timestamps are readOnly. */
static const struct rule update_notification_params[] = {
  PATH_ID,
  { "sim_card_id", K_STRING, IN(IN_BODY), FORMAT(F_UUID) },
  { "threshold", K_OBJECT, IN(IN_BODY), FIELDS(data_size_fields) },
  END
};

/* --- Reference: read-only lists Telnyx manages --- */

static const struct rule list_wireless_regions_params[] = {
  /* "public_ips", "private_wireless_gateways", ...: the document has no enum */
  { "product", K_STRING, REQUIRED, IN(IN_QUERY), MIN(1) },
  END
};

/* filter[name][starts_with]=...: one level deeper */
static const struct rule operator_name_fields[] = {
  { "contains", K_STRING, MIN(1) },
  { "ends_with", K_STRING, MIN(1) },
  { "starts_with", K_STRING, MIN(1) },
  END
};

static const struct rule operator_filter_fields[] = {
  { "country_code", K_STRING, MIN(1) },
  { "mcc", K_STRING, MIN(1) },
  { "mnc", K_STRING, MIN(1) },
  { "name", K_OBJECT, FIELDS(operator_name_fields) },
  { "network_preferences_enabled", K_BOOLEAN },
  { "tadig", K_STRING, MIN(1) },
  END
};

static const struct rule list_mobile_network_operators_params[] = {
  FILTER(operator_filter_fields),
  PAGE,
  END
};

/* --- The table --- */

/* name, method, path, body, result, resend, noun, check, params.
 * resend (NOTES.md "What a second copy of a request does"): purchase, order
 * create and (bulk) public IPs spend money; group and notification create make
 * duplicates; everything else converges. */
static const struct operation operations[] = {
  /* Purchase / register */
  { "purchase_esims", "POST", "/actions/purchase/esims", BODY_JSON, RESULT_LIST, RESEND_SPENDS,
    "SIM card", "the SIM card list", purchase_esims_params },
  { "register_sim_cards", "POST", "/actions/register/sim_cards", BODY_JSON, RESULT_LIST, RESEND_SAFE,
    "SIM card", NULL, register_sim_cards_params },

  /* SIM cards */
  { "list_sim_cards", "GET", "/sim_cards", BODY_NONE, RESULT_LIST, RESEND_SAFE,
    "SIM card", NULL, list_sim_cards_params },
  { "get_sim_card", "GET", "/sim_cards/{id}", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card", NULL, get_sim_card_params },
  { "update_sim_card", "PATCH", "/sim_cards/{id}", BODY_JSON, RESULT_ONE, RESEND_SAFE,
    "SIM card", NULL, update_sim_card_params },
  { "delete_sim_card", "DELETE", "/sim_cards/{id}", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card", NULL, delete_sim_card_params },
  /* the four actions below answer 202 with a SIM card action */
  { "enable_sim_card", "POST", "/sim_cards/{id}/actions/enable", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card", NULL, id_only_params },
  { "disable_sim_card", "POST", "/sim_cards/{id}/actions/disable", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card", NULL, id_only_params },
  { "set_sim_card_standby", "POST", "/sim_cards/{id}/actions/set_standby", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card", NULL, id_only_params },
  { "set_sim_card_public_ip", "POST", "/sim_cards/{id}/actions/set_public_ip", BODY_NONE, RESULT_ONE,
    RESEND_SPENDS, "SIM card action", "the SIM card's public IP", set_sim_card_public_ip_params },
  { "remove_sim_card_public_ip", "POST", "/sim_cards/{id}/actions/remove_public_ip", BODY_NONE, RESULT_ONE,
    RESEND_SAFE, "SIM card action", NULL, id_only_params },
  { "get_sim_card_public_ip", "GET", "/sim_cards/{id}/public_ip", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "public IP", NULL, id_only_params },
  { "get_sim_card_activation_code", "GET", "/sim_cards/{id}/activation_code", BODY_NONE, RESULT_ONE,
    RESEND_SAFE, "activation code", NULL, id_only_params },
  { "get_sim_card_device_details", "GET", "/sim_cards/{id}/device_details", BODY_NONE, RESULT_ONE,
    RESEND_SAFE, "device details", NULL, id_only_params },
  { "list_wireless_connectivity_logs", "GET", "/sim_cards/{id}/wireless_connectivity_logs", BODY_NONE,
    RESULT_LIST, RESEND_SAFE, "wireless connectivity log", NULL, list_wireless_connectivity_logs_params },
  /* answers {data: [{registration_code, valid, invalid_detail}]}, no meta */
  { "validate_registration_codes", "POST", "/sim_cards/actions/validate_registration_codes", BODY_JSON,
    RESULT_LIST, RESEND_SAFE, "registration code", NULL, validate_registration_codes_params },
  { "bulk_enable_voice", "POST", "/sim_cards/actions/bulk_enable_voice", BODY_JSON, RESULT_ONE, RESEND_SAFE,
    "bulk SIM card action", NULL, bulk_voice_params },
  { "bulk_disable_voice", "POST", "/sim_cards/actions/bulk_disable_voice", BODY_JSON, RESULT_ONE, RESEND_SAFE,
    "bulk SIM card action", NULL, bulk_voice_params },
  { "bulk_set_public_ips", "POST", "/sim_cards/actions/bulk_set_public_ips", BODY_JSON, RESULT_ONE,
    RESEND_SPENDS, "bulk SIM card action", "the bulk SIM card action list", bulk_set_public_ips_params },

  /* Actions */
  { "list_sim_card_actions", "GET", "/sim_card_actions", BODY_NONE, RESULT_LIST, RESEND_SAFE,
    "SIM card action", NULL, list_sim_card_actions_params },
  { "get_sim_card_action", "GET", "/sim_card_actions/{id}", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card action", NULL, id_only_params },
  { "list_bulk_sim_card_actions", "GET", "/bulk_sim_card_actions", BODY_NONE, RESULT_LIST, RESEND_SAFE,
    "bulk SIM card action", NULL, list_bulk_sim_card_actions_params },
  { "get_bulk_sim_card_action", "GET", "/bulk_sim_card_actions/{id}", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "bulk SIM card action", NULL, id_only_params },

  /* Groups */
  { "list_sim_card_groups", "GET", "/sim_card_groups", BODY_NONE, RESULT_LIST, RESEND_SAFE,
    "SIM card group", NULL, list_sim_card_groups_params },
  { "create_sim_card_group", "POST", "/sim_card_groups", BODY_JSON, RESULT_ONE, RESEND_DUPLICATES,
    "SIM card group", "the SIM card group list", create_sim_card_group_params },
  { "get_sim_card_group", "GET", "/sim_card_groups/{id}", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card group", NULL, get_sim_card_group_params },
  { "update_sim_card_group", "PATCH", "/sim_card_groups/{id}", BODY_JSON, RESULT_ONE, RESEND_SAFE,
    "SIM card group", NULL, update_sim_card_group_params },
  { "delete_sim_card_group", "DELETE", "/sim_card_groups/{id}", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card group", NULL, id_only_params },
  /* the four group actions answer 202 with a SIM card group action */
  { "set_sim_card_group_private_wireless_gateway", "POST",
    "/sim_card_groups/{id}/actions/set_private_wireless_gateway", BODY_JSON, RESULT_ONE, RESEND_SAFE,
    "SIM card group action", NULL, set_private_wireless_gateway_params },
  { "remove_sim_card_group_private_wireless_gateway", "POST",
    "/sim_card_groups/{id}/actions/remove_private_wireless_gateway", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card group action", NULL, id_only_params },
  { "set_sim_card_group_wireless_blocklist", "POST",
    "/sim_card_groups/{id}/actions/set_wireless_blocklist", BODY_JSON, RESULT_ONE, RESEND_SAFE,
    "SIM card group action", NULL, set_wireless_blocklist_params },
  { "remove_sim_card_group_wireless_blocklist", "POST",
    "/sim_card_groups/{id}/actions/remove_wireless_blocklist", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card group action", NULL, id_only_params },
  { "list_sim_card_group_actions", "GET", "/sim_card_group_actions", BODY_NONE, RESULT_LIST, RESEND_SAFE,
    "SIM card group action", NULL, list_sim_card_group_actions_params },
  { "get_sim_card_group_action", "GET", "/sim_card_group_actions/{id}", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card group action", NULL, id_only_params },

  /* Orders */
  { "preview_sim_card_order", "POST", "/sim_card_order_preview", BODY_JSON, RESULT_ONE, RESEND_SAFE,
    "SIM card order preview", NULL, order_params },
  { "list_sim_card_orders", "GET", "/sim_card_orders", BODY_NONE, RESULT_LIST, RESEND_SAFE,
    "SIM card order", NULL, list_sim_card_orders_params },
  { "create_sim_card_order", "POST", "/sim_card_orders", BODY_JSON, RESULT_ONE, RESEND_SPENDS,
    "SIM card order", "the SIM card order list", order_params },
  { "get_sim_card_order", "GET", "/sim_card_orders/{id}", BODY_NONE, RESULT_ONE, RESEND_SAFE,
    "SIM card order", NULL, id_only_params },

  /* Data-usage notifications */
  { "list_sim_card_data_usage_notifications", "GET", "/sim_card_data_usage_notifications", BODY_NONE,
    RESULT_LIST, RESEND_SAFE, "data usage notification", NULL, list_notifications_params },
  { "create_sim_card_data_usage_notification", "POST", "/sim_card_data_usage_notifications", BODY_JSON,
    RESULT_ONE, RESEND_DUPLICATES, "data usage notification", "the data usage notification list",
    create_notification_params },
  { "get_sim_card_data_usage_notification", "GET", "/sim_card_data_usage_notifications/{id}", BODY_NONE,
    RESULT_ONE, RESEND_SAFE, "data usage notification", NULL, id_only_params },
  { "update_sim_card_data_usage_notification", "PATCH", "/sim_card_data_usage_notifications/{id}", BODY_JSON,
    RESULT_ONE, RESEND_SAFE, "data usage notification", NULL, update_notification_params },
  { "delete_sim_card_data_usage_notification", "DELETE", "/sim_card_data_usage_notifications/{id}", BODY_NONE,
    RESULT_ONE, RESEND_SAFE, "data usage notification", NULL, id_only_params },

  /* Reference */
  /* a plain list: no paging, no meta */
  { "list_wireless_regions", "GET", "/wireless/regions", BODY_NONE, RESULT_LIST, RESEND_SAFE,
    "wireless region", NULL, list_wireless_regions_params },
  { "list_mobile_network_operators", "GET", "/mobile_network_operators", BODY_NONE, RESULT_LIST, RESEND_SAFE,
    "mobile network operator", NULL, list_mobile_network_operators_params },
};

#define N_OPERATIONS (sizeof operations / sizeof operations[0])

#endif
