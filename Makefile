# hellod: release build, install as a systemd service, benchmark.
#
#   make                      release binaries, Swift standard library linked statically
#   sudo make install         binaries and units; then: systemctl enable --now hellod.socket
#   sudo make uninstall       stops, disables and removes them
#   make bench                hellod against ../shared/bench's refecho, side by side
#   make bench-malloc         heap allocations per datagram (Benchmarks/, package-benchmark)
#   make bench-malloc-proof   the same gate on deliberately broken benchmarks: must fail
#
# PREFIX (/usr/local), BINDIR, UNITDIR and DESTDIR are honoured as usual.

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR ?=
SCRATCH ?= .build-static
RELEASE  = $(SCRATCH)/release
# One socket unit per service, all feeding hellod.service.
SOCKETS  = systemd/hellod.socket systemd/hellod-echo.socket systemd/hellod-chat.socket

# Talk to systemd only when installing into the running system.
SYSTEMCTL = if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl

.PHONY: all build install uninstall bench bench-malloc bench-malloc-proof test

all: build

build:
	scripts/deps.sh build
	swift build -c release --static-swift-stdlib --scratch-path $(SCRATCH)

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(RELEASE)/hellod $(RELEASE)/hello $(DESTDIR)$(BINDIR)/
	sed 's|^ExecStart=/usr/local/bin/hellod|ExecStart=$(BINDIR)/hellod|' systemd/hellod.service \
		> $(DESTDIR)$(UNITDIR)/hellod.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/hellod.service
	install -m 0644 $(SOCKETS) $(DESTDIR)$(UNITDIR)/
	@$(SYSTEMCTL) daemon-reload; fi
	@echo "installed; start it with: systemctl enable --now hellod.socket"
	@echo "echo on 8899 too: systemctl enable hellod-echo.socket && systemctl restart hellod.service"

uninstall:
	-@$(SYSTEMCTL) disable --now $(notdir $(SOCKETS)) hellod.service; fi
	rm -f $(DESTDIR)$(BINDIR)/hellod $(DESTDIR)$(BINDIR)/hello
	rm -f $(DESTDIR)$(UNITDIR)/hellod.service $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(SOCKETS)))
	@$(SYSTEMCTL) daemon-reload; fi

bench: build
	scripts/deps.sh bench
	bench/compare.py $(BENCH_ARGS)

bench-malloc:
	cd Benchmarks && swift package benchmark thresholds check --no-progress

# Run after bench-malloc: it reuses that build.
bench-malloc-proof:
	Benchmarks/prove-gate.sh

test:
	./test.sh
