// libsystemd, found through pkg-config (Debian: libsystemd-dev).
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
