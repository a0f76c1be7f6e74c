/*
 * version — limpet's version string, shown by --version, the admin API,
 * /metrics and limpetctl.
 */
#ifndef LIMPET_CORE_VERSION_H
#define LIMPET_CORE_VERSION_H

#define LIMPET_VERSION "0.1.0"

#endif
