#!/bin/sh
# tls-certs.sh DIR - throw-away certificates for the TLS unit tests, made
# with the openssl command (Debian package "openssl").
#
#   ca.pem            root CA (the only certificate clients trust)
#   int.pem/.key      intermediate CA, signed by the root; signs every leaf
#   NAME.pem          leaf certificate followed by int.pem (the chain served)
#   NAME.key          its key (unencrypted PEM)
#
# Leaves (name: key type, subjectAltName):
#   default   RSA    default.test
#   a-rsa     RSA    a.test          a-ec  ECDSA P-256  a.test
#   b         ECDSA  b.test, www.b.test
#   c         RSA    c.test
#   wild      RSA    *.wild.test
#   ip        RSA    IP 127.0.0.1
#   client    ECDSA  client.test (clientAuth)
#   soon      RSA    soon.test, expires in 3 days
#   expired   RSA    expired.test, expired in 2020
#   self      ECDSA  self.test, self-signed (self.pem has no chain)
#   dsa       DSA    self-signed (a key type weir refuses)
#   enc.key   an encrypted key (passphrase "secret")
#   garbage.pem  not PEM at all
set -eu
dir=$1
cd "$dir"
exec 2>openssl.log

ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
rsa() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

ec ca.key
openssl req -x509 -new -key ca.key -subj "/CN=weir test root CA" -days 30 -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

ec int.key
openssl req -new -key int.key -subj "/CN=weir test intermediate CA" -out int.csr
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >int.ext
openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile int.ext -out int.pem

# leaf NAME KEYTYPE DAYS SAN
leaf() {
    "$2" "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$4" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA int.pem -CAkey int.key -CAcreateserial -days "$3" \
        -extfile "$1.ext" -out "$1.crt"
    cat "$1.crt" int.pem >"$1.pem"
}

leaf default rsa 30 DNS:default.test
leaf a-rsa rsa 30 DNS:a.test
leaf a-ec ec 30 DNS:a.test
leaf b ec 30 DNS:b.test,DNS:www.b.test
leaf c rsa 30 DNS:c.test
leaf wild rsa 30 'DNS:*.wild.test'
leaf ip rsa 30 IP:127.0.0.1
leaf client ec 30 DNS:client.test
leaf soon rsa 3 DNS:soon.test

# expired: `openssl x509` cannot back-date, `openssl ca` can.
rsa expired.key
openssl req -new -key expired.key -subj "/CN=expired" -out expired.csr
: >index.txt
echo 1000 >serial
cat >ca.cnf <<EOF
[ca]
default_ca = d
[d]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
EOF
printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:expired.test\n' >expired.ext
openssl ca -batch -config ca.cnf -cert int.pem -keyfile int.key -in expired.csr -notext \
    -startdate 20200101000000Z -enddate 20200201000000Z -extfile expired.ext -out expired.crt
cat expired.crt int.pem >expired.pem

ec self.key
openssl req -x509 -new -key self.key -subj "/CN=self.test" -days 30 -out self.pem \
    -addext "subjectAltName=DNS:self.test"

# dsa: a DSA key and certificate (a key type weir refuses)
openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 -out dsa.param
openssl genpkey -paramfile dsa.param -out dsa.key
openssl req -x509 -new -key dsa.key -subj "/CN=dsa.test" -days 30 -out dsa.pem

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-256-cbc -pass pass:secret -out enc.key
echo "this is not a certificate" >garbage.pem
echo ok >done
