/*
 * tls_fixture — the fuzz_tls target's server certificates and keys (two
 * self-signed ECDSA P-256 certificates, a.fuzz.test and b.fuzz.test, valid for
 * 100 years), made once with:
 *
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
 *       -keyout N.key -out N.pem -days 36500 -subj "/CN=N.fuzz.test" \
 *       -addext "subjectAltName=DNS:N.fuzz.test"
 *
 * Test material only: these keys protect nothing.
 */
#ifndef LIMPET_FUZZ_TLS_FIXTURE_H
#define LIMPET_FUZZ_TLS_FIXTURE_H

static const char FIXTURE_A_CERT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBmzCCAUGgAwIBAgIUdRY6fXCRMLwexZrD0PJBkxV0dtwwCgYIKoZIzj0EAwIw\n"
    "FjEUMBIGA1UEAwwLYS5mdXp6LnRlc3QwIBcNMjYxMjAyMTIwMDQyWhgPMjEyNjEx\n"
    "MDgxMjAwNDJaMBYxFDASBgNVBAMMC2EuZnV6ei50ZXN0MFkwEwYHKoZIzj0CAQYI\n"
    "KoZIzj0DAQcDQgAEVPcfe513iTQFpjpDSvT8/3NXwdWMHP50EZVrFe6GAYLofSEJ\n"
    "tE4flo6wk/oYdSj4EyY1a9xQ7LsyXboG5vzF06NrMGkwHQYDVR0OBBYEFFxZpifD\n"
    "+wpcp0F86BPteFMpOV0xMB8GA1UdIwQYMBaAFFxZpifD+wpcp0F86BPteFMpOV0x\n"
    "MA8GA1UdEwEB/wQFMAMBAf8wFgYDVR0RBA8wDYILYS5mdXp6LnRlc3QwCgYIKoZI\n"
    "zj0EAwIDSAAwRQIhAMGIXj8p7mDYvnZqkhzdBDkN1E1/6M/xYGzLnqoNR8qCAiBL\n"
    "frJZHJuXvceay3fwwUFAdfAa5lBxC4SlkXhRwUuxqA==\n"
    "-----END CERTIFICATE-----\n";

static const char FIXTURE_A_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2gMjaheqdK+e7LAz\n"
    "Skmj1EDWz5+7vQvbYsDixbly+v2hRANCAARU9x97nXeJNAWmOkNK9Pz/c1fB1Ywc\n"
    "/nQRlWsV7oYBguh9IQm0Th+WjrCT+hh1KPgTJjVr3FDsuzJdugbm/MXT\n"
    "-----END PRIVATE KEY-----\n";

static const char FIXTURE_B_CERT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBmzCCAUGgAwIBAgIUf14LHeKflC1mcrYKtkfgte1fTlUwCgYIKoZIzj0EAwIw\n"
    "FjEUMBIGA1UEAwwLYi5mdXp6LnRlc3QwIBcNMjYxMjAyMTIwMDQyWhgPMjEyNjEx\n"
    "MDgxMjAwNDJaMBYxFDASBgNVBAMMC2IuZnV6ei50ZXN0MFkwEwYHKoZIzj0CAQYI\n"
    "KoZIzj0DAQcDQgAEdZWvlCrggMhR7YCix+dn2WgEcAJ5VuXUitBw3TB6UdLzJMcU\n"
    "v4dswlWqO2sk9Agr4Xtest21danRcSyl3DDLe6NrMGkwHQYDVR0OBBYEFIU5CI4Q\n"
    "d/O5fnRP8WmsoO/rr1WJMB8GA1UdIwQYMBaAFIU5CI4Qd/O5fnRP8WmsoO/rr1WJ\n"
    "MA8GA1UdEwEB/wQFMAMBAf8wFgYDVR0RBA8wDYILYi5mdXp6LnRlc3QwCgYIKoZI\n"
    "zj0EAwIDSAAwRQIhAKJsazPiTIMqE3FsFWiNQtwWvcRfbYd1JBPBhJq5OA8NAiB8\n"
    "Fui1/MgSCBudKYWKqFekXOBbC1AyvmCVhA9CxMeHJw==\n"
    "-----END CERTIFICATE-----\n";

static const char FIXTURE_B_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg7BiTwNVjCtj0YCBb\n"
    "jaHXNwmajyOEGoGCYSnoyLN/KHahRANCAAR1la+UKuCAyFHtgKLH52fZaARwAnlW\n"
    "5dSK0HDdMHpR0vMkxxS/h2zCVao7ayT0CCvhe16y3bV1qdFxLKXcMMt7\n"
    "-----END PRIVATE KEY-----\n";

#endif
