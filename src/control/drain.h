/*
 * drain — logs the end of each origin's drain (see drain.c).
 */
#ifndef LIMPET_CONTROL_DRAIN_H
#define LIMPET_CONTROL_DRAIN_H

#include "control/control.h"

/* Starts the once-a-second check on the control loop. */
void drain_watch_start(struct control *ctl);

#endif
