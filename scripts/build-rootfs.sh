#!/usr/bin/env bash
# Builds, in a folder, the root filesystem the Dockerfile's runtime stage
# describes, without pulling an image:
#
#   gcr.io/distroless/cc-debian12:nonroot   + /usr/local/bin/ferry
#
# distroless cc-debian12 is Debian 12 packages unpacked into a folder (no
# dpkg database, no shell, no package manager) plus a few files of its own;
# this script does the same from Debian's package registry:
#
#   static:  base-files, netbase, tzdata, the CA bundle made from the
#            ca-certificates package, /etc/passwd and /etc/group (root,
#            nobody, nonroot 65532), /etc/nsswitch.conf, /home/nonroot,
#            /tmp (1777), the usr-merge links (/bin /lib /lib64 /sbin -> usr/)
#   base:    libc6, libssl3
#   cc:      libgcc-s1, gcc-12-base, libgomp1, libstdc++6
#
# The .debs are fetched with `apt-get download` (the host's apt sources:
# run on Debian 12, after `apt-get update`) and unpacked with `dpkg-deb`.
# That is what debootstrap would do too, but debootstrap installs a whole
# base system (~250 packages, a dpkg database, maintainer scripts run in a
# chroot) that distroless does not have and that would then have to be
# removed again: ten .debs unpacked is faster, smaller and closer to the
# image. The .debs are kept in ${FERRY_TOOLS_DIR:-~/.cache/ferry-tools}/rootfs-debs,
# so a rerun needs no network (and still works offline with what is there).
#
# Then the binary goes to /usr/local/bin/ferry, and every shared library
# it needs (ldd) must be in the folder, or the script fails.
#
# Usage: scripts/build-rootfs.sh [--oci DIR] BINARY OUTDIR
#
#   --oci DIR   also make an OCI image of the folder with buildah (vfs
#               storage driver, no daemon, as root) with the Dockerfile's
#               configuration (USER, ENTRYPOINT, CMD, ENV, EXPOSE, WORKDIR),
#               written as an OCI layout to DIR (tag ferry:dev), and print
#               its manifest digest. Needs `apt-get install buildah`.
#
# OUTDIR is replaced (only if it is empty or an earlier output of this
# script). Run as root so that files are owned by root and /home/nonroot
# by 65532, as in the image.
set -euo pipefail

oci=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --oci) oci="${2:?--oci needs a directory}"; shift 2 ;;
        --oci=*) oci="${1#--oci=}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) echo "build-rootfs: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[[ $# -eq 2 ]] || { echo "usage: $0 [--oci DIR] BINARY OUTDIR" >&2; exit 2; }
binary="$1"
out="$2"
[[ -f "$binary" && -x "$binary" ]] || { echo "build-rootfs: $binary is not an executable file" >&2; exit 1; }

say() { echo "build-rootfs: $*" >&2; }
die() { say "$*"; exit 1; }

if [[ $EUID -ne 0 ]]; then
    say "warning: not root: files will be owned by $(id -un), not root and 65532"
fi
# The packages come from the host's apt sources: Debian 12's, as the image's.
if ! grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
    say "warning: not Debian 12 (bookworm): the packages will not be cc-debian12's"
fi

# The packages of distroless' static, base and cc layers for Debian 12.
packages=(base-files netbase tzdata ca-certificates libc6 libssl3 libgcc-s1 gcc-12-base libgomp1 libstdc++6)
arch="$(dpkg --print-architecture)"
case "$arch" in
    amd64) multiarch=x86_64-linux-gnu ;;
    arm64) multiarch=aarch64-linux-gnu ;;
    *) multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$arch-linux-gnu")" ;;
esac

debs="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-tools}/rootfs-debs"
mkdir -p "$debs"

# The candidate versions' .debs, from the cache or downloaded into it (one
# apt-cache and one apt-get call for all); with no package lists or no
# network, the newest cached ones.
declare -A deb_of=()
resolve() {
    local pkg version deb_arch file
    want=()
    while read -r pkg version deb_arch; do
        file="$debs/${pkg}_${version//:/%3a}_${deb_arch}.deb"
        deb_of[$pkg]="$file"
        [[ -s "$file" ]] || want+=("$pkg=$version")
    done < <(apt-cache show --no-all-versions "${packages[@]}" 2>/dev/null |
        awk '/^Package:/ {p=$2} /^Version:/ {v=$2} /^Architecture:/ {a=$2} /^$/ && p {print p, v, a; p=""} END {if (p) print p, v, a}')
}
download() {
    local sandbox=()
    [[ $EUID -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
    say "downloading ${want[*]}"
    (cd "$debs" && apt-get download -q "${sandbox[@]}" "${want[@]}" >&2)
}
fetch_all() {
    local pkg file want=()
    resolve
    if [[ ${#want[@]} -gt 0 ]] && ! download; then
        # No package lists yet (a fresh machine or a slim image): fetch them once.
        if [[ $EUID -eq 0 ]] && say "apt-get update, then again" && apt-get update -qq >&2; then
            resolve
            [[ ${#want[@]} -eq 0 ]] || download || say "warning: apt-get download failed"
        else
            say "warning: apt-get download failed"
        fi
    fi
    for pkg in "${packages[@]}"; do
        file="${deb_of[$pkg]:-}"
        if [[ -z "$file" || ! -s "$file" ]]; then
            file="$(ls "$debs/${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)"
            [[ -n "$file" ]] || die "cannot fetch $pkg: run apt-get update (Debian 12 sources) first"
            say "using cached $(basename "$file")"
            deb_of[$pkg]="$file"
        fi
    done
}

# Replace OUTDIR only if it is ours.
if [[ -e "$out" ]]; then
    if [[ -f "$out/.ferry-rootfs" ]] || [[ -d "$out" && -z "$(ls -A "$out")" ]]; then
        rm -rf "$out"
    else
        die "$out exists and is not an earlier rootfs of this script: not touching it"
    fi
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# usr-merge, as distroless debian12 has it: the packages' /lib/... files
# land in usr/lib/..., and the ELF interpreter /lib64/ld-linux-x86-64.so.2
# resolves. (`dpkg-deb -x` would replace these links with directories;
# tar's --keep-directory-symlink keeps them.)
for d in bin lib lib64 sbin; do
    mkdir -p "$out/usr/$d"
    ln -s "usr/$d" "$out/$d"
done

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

fetch_all
for pkg in "${packages[@]}"; do
    deb="${deb_of[$pkg]}"
    if [[ "$pkg" == ca-certificates ]]; then
        # distroless keeps only the bundle (and the copyright) of this
        # package: no update-ca-certificates, no openssl in the image.
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$scratch"
        continue
    fi
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$out"
done

# The CA bundle as update-ca-certificates writes it with the default
# configuration (every certificate of the package, in the order of
# /etc/ca-certificates.conf, which is sorted): each PEM file, concatenated.
mkdir -p "$out/etc/ssl/certs" "$out/usr/share/doc/ca-certificates"
(
    cd "$scratch/usr/share/ca-certificates"
    find . -name '*.crt' -printf '%P\n' | LC_ALL=C sort | while read -r crt; do
        sed -e '$a\' "$crt"
    done
) > "$out/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$out/etc/ssl/certs/ca-certificates.crt"
cp "$scratch/usr/share/doc/ca-certificates/copyright" "$out/usr/share/doc/ca-certificates/"
certs="$(grep -c 'BEGIN CERTIFICATE' "$out/etc/ssl/certs/ca-certificates.crt")"
[[ "$certs" -gt 100 ]] || die "the CA bundle has only $certs certificates"
# Same certificates as the host's bundle when it comes from the same package version.
if [[ -s /etc/ssl/certs/ca-certificates.crt ]] && cmp -s "$out/etc/ssl/certs/ca-certificates.crt" /etc/ssl/certs/ca-certificates.crt; then
    say "CA bundle: $certs certificates (identical to the host's update-ca-certificates output)"
else
    say "CA bundle: $certs certificates"
fi

# distroless' own files.
cat > "$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat > "$out/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
cat > "$out/etc/nsswitch.conf" <<'EOF'
passwd:         files
group:          files
shadow:         files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files
EOF
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
mkdir -p "$out/root" "$out/home/nonroot" "$out/tmp" "$out/var" "$out/usr/local/bin"
chmod 0700 "$out/root" "$out/home/nonroot"
chmod 1777 "$out/tmp"
if [[ $EUID -eq 0 ]]; then
    chown 65532:65532 "$out/home/nonroot"
fi

# No dpkg database and no maintainer scripts run, as in distroless: no
# ld.so.cache either, the loader finds the libraries in its default
# directories.

# The binary, as COPY --from=build puts it.
install -m 0755 "$binary" "$out/usr/local/bin/ferry"

# Every library the binary needs is in the folder.
missing=0
while read -r name path; do
    [[ -n "$name" ]] || continue
    found=""
    for dir in "usr/lib/$multiarch" usr/lib usr/lib64 "usr/local/lib"; do
        if [[ -e "$out/$dir/$name" ]]; then found="/$dir/$name"; break; fi
    done
    # the ELF interpreter ldd names by its absolute path
    if [[ -z "$found" && "$path" == /* && -e "$out$path" ]]; then found="$path"; fi
    if [[ -z "$found" ]]; then
        say "missing in the rootfs: $name (host: $path)"
        missing=1
    fi
done < <(ldd "$binary" | awk '/=>/ {print $1, $3; next} /^[ \t]*\// {n=$1; sub(".*/", "", n); print n, $1}')
[[ $missing -eq 0 ]] || die "the binary needs libraries the image does not have"
# The same question asked of the rootfs' own loader, inside it.
if [[ $EUID -eq 0 ]] && command -v chroot >/dev/null; then
    interp="$(ldd "$binary" | awk '/^[ \t]*\// {print $1; exit}')"
    if [[ -n "$interp" ]]; then
        list="$(chroot "$out" "$interp" --list /usr/local/bin/ferry 2>&1)" || die "the rootfs' loader cannot load the binary: $list"
        if grep -q 'not found' <<<"$list"; then die "in the rootfs: $list"; fi
    fi
fi

touch "$out/.ferry-rootfs"
total="$(du -s --block-size=1M --apparent-size "$out" | cut -f1)"
bin="$(du -s --block-size=1M --apparent-size "$out/usr/local/bin/ferry" | cut -f1)"
say "rootfs in $out: ${total} MiB, of which the binary ${bin} MiB"

if [[ -n "$oci" ]]; then
    command -v buildah >/dev/null || die "--oci needs buildah (apt-get install buildah)"
    [[ $EUID -eq 0 ]] || die "--oci runs buildah as root (vfs storage driver, no daemon)"
    store="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-tools}/buildah"
    b=(buildah --storage-driver vfs --root "$store/storage" --runroot "$store/run")
    ctr="$("${b[@]}" from --quiet scratch)"
    cleanup_ctr() { "${b[@]}" rm "$ctr" >/dev/null 2>&1 || true; }
    trap 'cleanup_ctr; rm -rf "$scratch"' EXIT
    # Everything but the marker, with owners and modes as they are.
    mnt="$("${b[@]}" mount "$ctr")"
    tar -C "$out" --exclude=./.ferry-rootfs -cf - . | tar -C "$mnt" -xpf -
    "${b[@]}" umount "$ctr" >/dev/null
    # The configuration distroless' nonroot image and the Dockerfile give.
    "${b[@]}" config \
        --os linux --arch "$arch" \
        --user 65532:65532 \
        --workingdir /home/nonroot \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --env FERRY_CONFIG=/etc/ferry/ferry.toml \
        --port 2525/tcp --port 2587/tcp --port 2465/tcp --port 8025/tcp \
        --entrypoint '["/usr/local/bin/ferry"]' \
        --cmd '["serve","--role","all"]' \
        --created-by "scripts/build-rootfs.sh: distroless cc-debian12:nonroot from Debian packages + ferry" \
        "$ctr"
    # Same inputs, same digest: timestamps from SOURCE_DATE_EPOCH (0 by default).
    "${b[@]}" commit --quiet --format oci --timestamp "${SOURCE_DATE_EPOCH:-0}" "$ctr" localhost/ferry:dev >/dev/null
    rm -rf "$oci"
    mkdir -p "$(dirname "$oci")"
    "${b[@]}" push --quiet --digestfile "$scratch/digest" localhost/ferry:dev "oci:$oci:ferry:dev"
    "${b[@]}" rmi localhost/ferry:dev >/dev/null 2>&1 || true
    digest="$(cat "$scratch/digest")"
    say "OCI image in $oci (ferry:dev): $digest"
    echo "$digest"
fi
