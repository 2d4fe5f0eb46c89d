// The listener (docs/api.md "Running"): HTTPS with a certificate made here, plain HTTP only on
// loopback, the framework's own answers (413, 415, 404, 405) with the error body and a request id.
#include "api/server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "test_database.h"

namespace medcard::api {
namespace {

using nlohmann::json;

// A self-signed certificate for "localhost" / 127.0.0.1 and its key, as PEM files in `dir`.
struct CertificateFiles {
  std::string certificate;
  std::string private_key;
};

CertificateFiles MakeSelfSignedCertificate(const std::string& dir) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  X509_add_ext(cert, san, -1);
  X509_EXTENSION_free(san);
  X509_sign(cert, key, EVP_sha256());

  CertificateFiles files{dir + "/api.crt", dir + "/api.key"};
  FILE* out = std::fopen(files.certificate.c_str(), "w");
  PEM_write_X509(out, cert);
  std::fclose(out);
  out = std::fopen(files.private_key.c_str(), "w");
  PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(out);
  X509_free(cert);
  EVP_PKEY_free(key);
  return files;
}

// A router with one JSON endpoint that echoes the body's size.
Router EchoRouter() {
  Router router;
  router.Add("GET", "/v1/ping", [](const HttpRequest&, const PathParams&) {
    return JsonResponse(200, R"({"pong": true})");
  });
  router.Add("POST", "/v1/things/{id}", [](const HttpRequest& request, const PathParams& params) {
    return JsonResponse(201, json{{"id", params.at("id")}, {"bytes", request.body.size()}}.dump());
  });
  return router;
}

void ExpectErrorBody(const httplib::Result& result, int status, const std::string& code) {
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, status);
  auto body = json::parse(result->body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << result->body;
  EXPECT_EQ(body["error"]["code"], code) << result->body;
  EXPECT_TRUE(body["error"]["message"].is_string());
  EXPECT_FALSE(result->get_header_value("X-Request-Id").empty());
}

TEST(ServerTest, PlainHttpOnANonLoopbackAddressIsRefusedAtStart) {
  Router router = EchoRouter();
  for (const char* address : {"0.0.0.0", "10.1.2.3", "::"}) {
    ServerOptions options;
    options.listen_address = address;
    options.port = 0;
    auto server = Server::Start(options, [&](const HttpRequest& r) { return router.Dispatch(r); });
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_NE(server.error().message.find("loopback"), std::string::npos);
  }
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackAddress("127.8.9.10"));
  EXPECT_TRUE(IsLoopbackAddress("::1"));
  EXPECT_TRUE(IsLoopbackAddress("localhost"));
  EXPECT_FALSE(IsLoopbackAddress("128.0.0.1"));
}

TEST(ServerTest, MissingOrBadCertificateIsRefusedAtStart) {
  Router router = EchoRouter();
  const std::string dir = test_support::NewTempDir("medcard-api");
  ServerOptions options;
  options.listen_address = "0.0.0.0";
  options.port = 0;
  options.tls_certificate = dir + "/none.crt";
  options.tls_private_key = dir + "/none.key";
  EXPECT_FALSE(
      Server::Start(options, [&](const HttpRequest& r) { return router.Dispatch(r); }).ok());
  auto files = MakeSelfSignedCertificate(dir);
  options.tls_certificate = files.certificate;
  options.tls_private_key = files.certificate;  // not a key
  EXPECT_FALSE(
      Server::Start(options, [&](const HttpRequest& r) { return router.Dispatch(r); }).ok());
}

TEST(ServerTest, HttpsRoundTripWithASelfSignedCertificate) {
  Router router = EchoRouter();
  const std::string dir = test_support::NewTempDir("medcard-api");
  auto files = MakeSelfSignedCertificate(dir);
  ServerOptions options;
  options.listen_address = "127.0.0.1";
  options.port = 0;
  options.tls_certificate = files.certificate;
  options.tls_private_key = files.private_key;
  auto server = Server::Start(options, [&](const HttpRequest& r) { return router.Dispatch(r); });
  ASSERT_TRUE(server.ok()) << server.error().message;
  EXPECT_TRUE((*server)->tls());

  httplib::SSLClient client("localhost", (*server)->port());
  client.set_ca_cert_path(files.certificate.c_str());
  client.enable_server_certificate_verification(true);
  auto ping = client.Get("/v1/ping", {{"X-Request-Id", "desk-7.req-42"}});
  ASSERT_TRUE(ping) << httplib::to_string(ping.error());
  EXPECT_EQ(ping->status, 200);
  EXPECT_EQ(json::parse(ping->body)["pong"], true);
  EXPECT_EQ(ping->get_header_value("X-Request-Id"), "desk-7.req-42");
  const long verify = client.get_openssl_verify_result();
  EXPECT_EQ(verify, X509_V_OK);

  auto created = client.Post("/v1/things/abc", R"({"a": 1})", "application/json");
  ASSERT_TRUE(created);
  EXPECT_EQ(created->status, 201);
  EXPECT_EQ(json::parse(created->body)["id"], "abc");
  // An insane request id is replaced by a fresh one.
  auto renamed = client.Get("/v1/ping", {{"X-Request-Id", "bad id with spaces"}});
  ASSERT_TRUE(renamed);
  EXPECT_EQ(renamed->get_header_value("X-Request-Id").size(), 32u);

  // Plain HTTP to the TLS port gets nowhere.
  httplib::Client plain("127.0.0.1", (*server)->port());
  plain.set_read_timeout(2);
  auto refused = plain.Get("/v1/ping");
  EXPECT_TRUE(!refused || refused->status != 200);
  (*server)->Stop();
}

TEST(ServerTest, TlsBelow12IsRefused) {
  Router router = EchoRouter();
  const std::string dir = test_support::NewTempDir("medcard-api");
  auto files = MakeSelfSignedCertificate(dir);
  ServerOptions options;
  options.port = 0;
  options.tls_certificate = files.certificate;
  options.tls_private_key = files.private_key;
  auto server = Server::Start(options, [&](const HttpRequest& r) { return router.Dispatch(r); });
  ASSERT_TRUE(server.ok()) << server.error().message;
  httplib::SSLClient client("127.0.0.1", (*server)->port());
  client.enable_server_certificate_verification(false);
  SSL_CTX_set_min_proto_version(client.ssl_context(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(client.ssl_context(), TLS1_1_VERSION);
  SSL_CTX_set_security_level(client.ssl_context(), 0);
  EXPECT_FALSE(client.Get("/v1/ping"));
}

class PlainServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.port = 0;
    auto server =
        Server::Start(options, [this](const HttpRequest& r) { return router_.Dispatch(r); });
    ASSERT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(*server);
    EXPECT_FALSE(server_->tls());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }
  Router router_ = EchoRouter();
  std::unique_ptr<Server> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(PlainServerTest, OversizedBodyIs413) {
  const std::string big = "{\"a\": \"" + std::string(kMaxBodyBytes, 'x') + "\"}";
  ExpectErrorBody(client_->Post("/v1/things/1", big, "application/json"), 413, "payload_too_large");
  // Just under the limit passes.
  const std::string fits = "{\"a\": \"" + std::string(kMaxBodyBytes - 20, 'x') + "\"}";
  auto ok = client_->Post("/v1/things/1", fits, "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201);
}

TEST_F(PlainServerTest, BodiesMustBeJson) {
  ExpectErrorBody(client_->Post("/v1/things/1", "a=1", "application/x-www-form-urlencoded"), 415,
                  "unsupported_media_type");
  ExpectErrorBody(client_->Post("/v1/things/1", "{}", "text/plain"), 415, "unsupported_media_type");
  auto charset = client_->Post("/v1/things/1", "{}", "application/json; charset=utf-8");
  ASSERT_TRUE(charset);
  EXPECT_EQ(charset->status, 201);
}

TEST_F(PlainServerTest, UnknownPathsAndMethods) {
  ExpectErrorBody(client_->Get("/v1/nothing"), 404, "not_found");
  ExpectErrorBody(client_->Get("/v1/things/1"), 405, "method_not_allowed");
  auto not_allowed = client_->Delete("/v1/ping");
  ASSERT_TRUE(not_allowed);
  EXPECT_EQ(not_allowed->status, 405);
  EXPECT_EQ(not_allowed->get_header_value("Allow"), "GET");
}

TEST_F(PlainServerTest, StopIsGracefulAndFinal) {
  auto before = client_->Get("/v1/ping");
  ASSERT_TRUE(before);
  EXPECT_EQ(before->status, 200);
  server_->Stop();
  server_->Stop();  // idempotent
  httplib::Client after("127.0.0.1", server_->port());
  after.set_connection_timeout(1);
  EXPECT_FALSE(after.Get("/v1/ping"));
}

}  // namespace
}  // namespace medcard::api
