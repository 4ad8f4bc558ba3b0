// SPDX-License-Identifier: MIT
// A TLS client with OpenSSL linked in statically (the TLS tests strip it): sends argv[3], reads one reply.
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
  inet_pton(AF_INET, argv[1], &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a))) return 2;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) return 3;
  SSL_write(ssl, argv[3], strlen(argv[3]));
  char buf[4096];
  int n = SSL_read(ssl, buf, sizeof(buf));
  if (n <= 0) return 4;
  printf("%d\n", n);
  return 0;
}
