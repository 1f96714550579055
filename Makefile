# pushcap: build, test, bench, install, demo.
PREFIX ?= /opt/fmadio
DESTDIR ?=
CC ?= cc
CFLAGS ?= -O2 -g
CFLAGS += -Wall -Wextra -std=gnu11 -D_GNU_SOURCE -fno-strict-aliasing
PKGS := luajit
LUAJIT_CFLAGS := $(shell pkg-config --cflags $(PKGS))
LUAJIT_LIBS := $(shell pkg-config --libs $(PKGS))

B := build
CORE := pcap_read pcap_write split proc store store_ahead bpf decap live ring compress curl_put
OBJS := $(CORE:%=$(B)/%.o) $(B)/cdef.o $(B)/host.o
HDR := runtime/pushcap.h

all: $(B)/fmadiolua $(B)/pcapgen

$(B)/store.o $(B)/store_ahead.o: runtime/store_priv.h

$(B):
	mkdir -p $(B)

$(B)/%.o: runtime/%.c $(HDR) | $(B)
	$(CC) $(CFLAGS) $(LUAJIT_CFLAGS) -Iruntime -c -o $@ $<

# pc_cdef() returns pushcap.h minus preprocessor lines: the header is the
# one description of the C surface, for the compiler and for ffi.cdef.
$(B)/cdef.c: $(HDR) | $(B)
	{ echo '/* generated from runtime/pushcap.h */'; \
	  echo 'const char *pc_cdef(void) { return'; \
	  grep -v '^#' $(HDR) | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/'; \
	  echo '; }'; } > $@

$(B)/cdef.o: $(B)/cdef.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/fmadiolua: $(OBJS)
	$(CC) $(CFLAGS) -rdynamic -o $@ $(OBJS) $(LUAJIT_LIBS) -lxxhash -lpcap -lz -llz4 -lzstd -ldl -lpthread -lm

$(B)/pcapgen: runtime/pcapgen.c | $(B)
	$(CC) $(CFLAGS) -pthread -o $@ $< -lm


# ---- setup -----------------------------------------------------------------
# Everything the build, the tests and the demo use, from Debian.
DEB_PKGS := gcc make pkg-config luajit libluajit-5.1-dev lua-busted \
	libpcap-dev libzstd-dev liblz4-dev zlib1g-dev libcurl4-openssl-dev libxxhash-dev \
	tcpdump tshark wireshark-common rclone curl ca-certificates \
	gzip pigz zstd lz4 hyperfine procps openssh-server openssh-client tcpreplay iproute2 vsftpd systemd \
	nodejs
# npm comes with nodesource's nodejs; Debian's nodejs needs the npm package.
# spec/s3server holds s3rver, the S3-compatible server of spec/rclone_spec.lua.
deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PKGS) > /dev/null
	command -v npm > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm > /dev/null
	cd spec/s3server && npm ci --no-audit --no-fund

# ---- checks ----------------------------------------------------------------
test: all
	bash spec/run.sh

bench: all
	bash bench/run.sh
	bash bench/store.sh
	bash bench/push.sh
	bash bench/remote.sh

# The main job on an embedded sample: generate five minutes of ISP-like
# traffic, import it into a capture store under build/demo/root, and push it
# with a copy of etc/push_pcap.lua.basic whose paths point under that root;
# then list what each target produced and where its log is.
DEMO := $(B)/demo
DEMO_ROOT := $(CURDIR)/$(DEMO)/root
DEMO_ENV := PATH=$(CURDIR)/$(B):$(CURDIR)/bin:$$PATH PUSHCAP_ROOT=$(DEMO_ROOT)
demo: all
	rm -rf $(DEMO) && mkdir -p $(DEMO_ROOT)/opt/fmadio/etc
	$(B)/pcapgen -p isp -b 50M -s 300 -S 1 -o $(DEMO)/sample.pcap
	$(DEMO_ENV) stream_capture --store-size 256M --import $(DEMO)/sample.pcap --name demo_20231114_2213
	$(DEMO_ENV) stream_cat --list
	sed 's|"/mnt/remote0/|"$(DEMO_ROOT)/mnt/remote0/|' etc/push_pcap.lua.basic > $(DEMO_ROOT)/opt/fmadio/etc/push_pcap.lua
	$(DEMO_ENV) analytics/push_pcap.lua --force --offline demo_20231114_2213
	@echo; echo "Files per target (packets as capinfos counts them):"
	@cd $(DEMO_ROOT)/mnt/remote0/pcap && for f in */*; do case $$f in *.zst) n=$$(zstd -dc $$f | capinfos -c -M - | tail -n 1);; \
	  *) n=$$(capinfos -c -M $$f | tail -n 1);; esac; printf '%s\t%s\n' "$(DEMO_ROOT)/mnt/remote0/pcap/$$f" "$${n##*:}"; done
	@echo; echo "Logs: $(DEMO_ROOT)/mnt/store0/log/push_<Desc>.cur"; ls -l $(DEMO_ROOT)/mnt/store0/log/

# ---- install ---------------------------------------------------------------
# Lays out PREFIX like the appliance: bin/ (fmadiolua, pcap_split, pcapgen),
# analytics/, etc_ro/ (templates) and lua/ beside bin/ where fmadiolua looks.
# Installed scripts name the installed interpreter in their shebang.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/analytics $(DESTDIR)$(PREFIX)/etc_ro \
	  $(DESTDIR)$(PREFIX)/lua/pushcap
	install -m 755 $(B)/fmadiolua $(B)/pcapgen $(DESTDIR)$(PREFIX)/bin/
	install -m 644 lua/pushcap/*.lua $(DESTDIR)$(PREFIX)/lua/pushcap/
	for f in bin/* analytics/*; do [ -f "$$f" ] && [ "$$(head -c 2 "$$f")" = "#!" ] || continue; \
	  sed '1s|^#!/usr/bin/env fmadiolua|#!$(PREFIX)/bin/fmadiolua|' "$$f" > $(DESTDIR)$(PREFIX)/$$f; \
	  chmod 755 $(DESTDIR)$(PREFIX)/$$f; done
	for f in etc/*; do [ -f "$$f" ] || continue; install -m 644 "$$f" $(DESTDIR)$(PREFIX)/etc_ro/; done
	install -d $(DESTDIR)$(PREFIX)/etc_ro/analytics
	install -m 755 etc/analytics/* $(DESTDIR)$(PREFIX)/etc_ro/analytics/
	install -d $(DESTDIR)$(PREFIX)/etc_ro/systemd $(DESTDIR)$(PREFIX)/doc
	for f in etc/systemd/*.service; do \
	  sed 's|/opt/fmadio|$(PREFIX)|g' "$$f" > $(DESTDIR)$(PREFIX)/etc_ro/systemd/$${f##*/}; \
	  chmod 644 $(DESTDIR)$(PREFIX)/etc_ro/systemd/$${f##*/}; done
	install -m 644 docs/*.md $(DESTDIR)$(PREFIX)/doc/

clean:
	rm -rf $(B)

.PHONY: all deps test bench demo install clean
