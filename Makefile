# hellod: release build, install as a systemd service, benchmark.
#
#   make                      release binaries, Swift standard library linked statically
#   make man                  hellod.8 and hello.1 from the binaries' options (+ man/*.tail)
#   make completions          bash, zsh and fish completions from the binaries
#   make version              the version, from Sources/HelloCLI/Version.swift (the one place)
#   sudo make install         binaries, units, manuals, completions, LICENSE and NOTICE,
#                             Prometheus alerting rules (prometheus/, in RULESDIR),
#                             /etc/default/hellod (kept if present); then:
#                             systemctl enable --now hellod.socket
#   sudo make uninstall       stops, disables and removes them
#   make deb                  the Debian package (debian/, through make install), in
#                             .build-static/deb/
#   make references           the C yardsticks, bench/reference/*.c, built with the system C
#                             compiler into .build-bench/ (bench/references.py)
#   make bench                hellod against those yardsticks, side by side: hello against
#                             the three C servers, then the chat relay against the C relay
#                             (BENCH_ARGS, CHAT_BENCH_ARGS)
#   make bench-chat           the chat comparison alone (bench/chat.py $(CHAT_BENCH_ARGS))
#   make plots                PERFORMANCE.md's plots from one short run of both benches
#                             (bench/plot.py $(PLOT_ARGS): matplotlib in .build-plot/venv)
#   make bench-malloc         heap allocations per datagram (Benchmarks/, package-benchmark)
#   make bench-malloc-proof   the same gate on deliberately broken benchmarks: must fail
#   make bench-aead           ns per AEAD seal, one per delivery of an encrypted chat
#                             (Benchmarks/, target AEADSeal; builds swift-crypto: not in the gate)
#
# PREFIX (/usr/local), BINDIR, UNITDIR, MANDIR, DOCDIR, DATADIR, RULESDIR, the completion
# directories and DESTDIR are honoured as usual; /etc/default/hellod is under DESTDIR only. DOCFILES: what
# goes in DOCDIR (debian/rules leaves LICENSE out: Debian's copyright file says it).

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/hellod
# NOTICE: what the linked packages' licences require to travel with the binaries.
DOCFILES ?= LICENSE NOTICE
DATADIR ?= $(PREFIX)/share
# The alerting rules and their promtool unit tests (docs/OPERATIONS.md, "Alerts").
RULESDIR ?= $(DATADIR)/hellod/prometheus
RULES = prometheus/hellod.rules.yml prometheus/hellod.rules.test.yml
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
DEFAULTS = /etc/default/hellod
DESTDIR ?=
SCRATCH ?= .build-static
RELEASE  = $(SCRATCH)/release
COMPLETIONS = $(SCRATCH)/completions
VERSION := $(shell sed -n 's/^package let hellodVersion = "\(.*\)"$$/\1/p' Sources/HelloCLI/Version.swift)
DEBDIR   = $(SCRATCH)/deb
DEB_ARCH = $(shell dpkg --print-architecture)
# One socket unit per service, all feeding hellod.service.
SOCKETS  = systemd/hellod.socket systemd/hellod-echo.socket systemd/hellod-chat.socket

# Talk to systemd only when installing into the running system.
SYSTEMCTL = if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl

.PHONY: all build man completions version install uninstall install-rules uninstall-rules deb references bench bench-chat plots bench-malloc bench-malloc-proof bench-aead test

all: build

# Linked by lld with its relative relocations packed (DT_RELR: glibc 2.36 or later) and no
# symbols exported: gold wrote 40,000 RELA entries (981 KB), read at every start and left
# mapped, and exported 6,000 symbols for ld.so to hash and look up. About 1.25 MiB less
# peak RSS (PERFORMANCE.md, Memory).
LINK = -Xswiftc -use-ld=lld -Xlinker -z -Xlinker pack-relative-relocs -Xlinker --no-export-dynamic

# The Swift driver leaves an empty TemporaryDirectory.* in $$TMPDIR at every run
# (swiftlang/swift-driver#2049): what runs swift here gets a TMPDIR of the checkout's own,
# so that building and testing leave nothing behind in /tmp.
SWIFT_TMP = $(CURDIR)/.build-tmp
build man bench bench-malloc bench-aead bench-malloc-proof: export TMPDIR = $(SWIFT_TMP)
build man bench bench-malloc bench-aead bench-malloc-proof: | $(SWIFT_TMP)
$(SWIFT_TMP):
	mkdir -p $@

build:
	scripts/deps.sh build
	swift build -c release --static-swift-stdlib --scratch-path $(SCRATCH) $(LINK)

version:
	@echo $(VERSION)

man: build
	scripts/manpages.sh $(SCRATCH)

# bash-completion sources its files, so the bash script's #! line goes (lintian warns on it).
completions: build
	mkdir -p $(COMPLETIONS)
	for p in hellod hello; do \
		$(RELEASE)/$$p --generate-completion-script bash > $(COMPLETIONS)/$$p.bash && \
		sed -i '1{/^#!/d;}' $(COMPLETIONS)/$$p.bash && \
		$(RELEASE)/$$p --generate-completion-script zsh > $(COMPLETIONS)/_$$p && \
		$(RELEASE)/$$p --generate-completion-script fish > $(COMPLETIONS)/$$p.fish || exit 1; \
	done

install: build man completions install-rules
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(RELEASE)/hellod $(RELEASE)/hello $(DESTDIR)$(BINDIR)/
	sed 's|^ExecStart=/usr/local/bin/hellod|ExecStart=$(BINDIR)/hellod|' systemd/hellod.service \
		> $(DESTDIR)$(UNITDIR)/hellod.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/hellod.service
	install -m 0644 $(SOCKETS) $(DESTDIR)$(UNITDIR)/
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1
	install -m 0644 $(SCRATCH)/man/hellod.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(SCRATCH)/man/hello.1 $(DESTDIR)$(MANDIR)/man1/
	install -d $(DESTDIR)$(DOCDIR)
	install -m 0644 $(DOCFILES) $(DESTDIR)$(DOCDIR)/
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	for p in hellod hello; do \
		install -m 0644 $(COMPLETIONS)/$$p.bash $(DESTDIR)$(BASHCOMPDIR)/$$p && \
		install -m 0644 $(COMPLETIONS)/_$$p $(DESTDIR)$(ZSHCOMPDIR)/_$$p && \
		install -m 0644 $(COMPLETIONS)/$$p.fish $(DESTDIR)$(FISHCOMPDIR)/$$p.fish || exit 1; \
	done
	@# Like a conffile: installed once, never overwritten (your options survive reinstalls).
	@if [ -e $(DESTDIR)$(DEFAULTS) ]; then echo "kept $(DESTDIR)$(DEFAULTS) (yours)"; \
	else install -D -m 0644 systemd/hellod.default $(DESTDIR)$(DEFAULTS); echo "installed $(DESTDIR)$(DEFAULTS)"; fi
	@$(SYSTEMCTL) daemon-reload; fi
	@echo "installed; start it with: systemctl enable --now hellod.socket"
	@echo "echo on 8899 too: systemctl enable hellod-echo.socket && systemctl restart hellod.service"

# The rules alone (make install and make uninstall run these): they need no build.
install-rules:
	install -d $(DESTDIR)$(RULESDIR)
	install -m 0644 $(RULES) $(DESTDIR)$(RULESDIR)/

uninstall-rules:
	rm -f $(addprefix $(DESTDIR)$(RULESDIR)/,$(notdir $(RULES)))
	rmdir $(DESTDIR)$(RULESDIR) $(DESTDIR)$(DATADIR)/hellod 2>/dev/null || true

uninstall: uninstall-rules
	-@$(SYSTEMCTL) disable --now $(notdir $(SOCKETS)) hellod.service; fi
	rm -f $(DESTDIR)$(BINDIR)/hellod $(DESTDIR)$(BINDIR)/hello
	rm -f $(DESTDIR)$(UNITDIR)/hellod.service $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(SOCKETS)))
	rm -f $(DESTDIR)$(MANDIR)/man8/hellod.8 $(DESTDIR)$(MANDIR)/man1/hello.1
	rm -f $(DESTDIR)$(DOCDIR)/LICENSE $(DESTDIR)$(DOCDIR)/NOTICE
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	rm -f $(addprefix $(DESTDIR)$(BASHCOMPDIR)/,hellod hello) $(addprefix $(DESTDIR)$(ZSHCOMPDIR)/,_hellod _hello)
	rm -f $(addprefix $(DESTDIR)$(FISHCOMPDIR)/,hellod.fish hello.fish)
	@# Removed only as installed; an edited one is kept, as dpkg keeps a changed conffile.
	@if cmp -s systemd/hellod.default $(DESTDIR)$(DEFAULTS); then rm -f $(DESTDIR)$(DEFAULTS); \
	elif [ -e $(DESTDIR)$(DEFAULTS) ]; then echo "kept $(DESTDIR)$(DEFAULTS) (changed; remove it yourself)"; fi
	@$(SYSTEMCTL) daemon-reload; fi

# dpkg-buildpackage writes to the directory above the checkout by default: here everything
# it makes goes to $(DEBDIR).
# debian/rules checks that debian/changelog's version is `make version`.
deb:
	scripts/deps.sh deb
	mkdir -p $(DEBDIR)
	DEB_DESTDIR=$(abspath $(DEBDIR)) SCRATCH=$(SCRATCH) dpkg-buildpackage -us -uc -b \
		--buildinfo-option=-u$(DEBDIR) --buildinfo-file=$(DEBDIR)/hellod_$(VERSION)_$(DEB_ARCH).buildinfo \
		--changes-option=-u$(DEBDIR) --changes-file=$(DEBDIR)/hellod_$(VERSION)_$(DEB_ARCH).changes
	@ls $(DEBDIR)/hellod_$(VERSION)_$(DEB_ARCH).deb

references:
	scripts/deps.sh bench
	bench/references.py

bench: build references
	bench/compare.py $(BENCH_ARGS)
	bench/chat.py $(CHAT_BENCH_ARGS)

bench-chat: build references
	bench/chat.py $(CHAT_BENCH_ARGS)

plots: build references
	bench/plot.py $(PLOT_ARGS)

bench-malloc:
	cd Benchmarks && swift package benchmark thresholds check --no-progress --target DatagramPath

bench-aead:
	cd Benchmarks && swift package benchmark --no-progress --target AEADSeal

# Run after bench-malloc: it reuses that build.
bench-malloc-proof:
	Benchmarks/prove-gate.sh

test:
	./test.sh
