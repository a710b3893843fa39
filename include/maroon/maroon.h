// Everything an app developer uses (docs/apps.md): the StateMachine an app
// implements, the registry that names apps, and the command line that runs
// them as single nodes, clusters and gateways.
#pragma once

#include "maroon/app.h"
#include "maroon/app_id.h"
#include "maroon/cli.h"
#include "maroon/limits.h"
#include "maroon/prng.h"
#include "maroon/state_machine.h"
#include "maroon/status.h"
#include "maroon/version.h"
