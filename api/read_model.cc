#include "eventsource/read_model.h"
