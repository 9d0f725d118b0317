/* test_codec.c: the qhost.codec module driven through a real lua_State
 * (with it the JSON encoder, decoder and number units, and the binary
 * packers), the internal qhost.runtime.json_at, and the JSON string escaper
 * for C. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "helpers.h"
#include "json_decode.h"
#include "json_encode.h"
#include "json_number.h"
#include "json_string.h"

#define ENC(L, expr) th_run(L, "return codec.json_encode(" expr ")")
#define DEC(L, json) th_run(L, "return codec.json_encode(codec.json_decode(" json "))")

TEST(encode_scalars)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(ENC(L, "nil"), "null");
    CHECK_EQ_STR(ENC(L, "codec.null"), "null");
    CHECK_EQ_STR(ENC(L, "true"), "true");
    CHECK_EQ_STR(ENC(L, "false"), "false");
    CHECK_EQ_STR(ENC(L, "'x'"), "\"x\"");
    CHECK_EQ_STR(ENC(L, "''"), "\"\"");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode()"),
                 "ERROR: bad argument #1 to '?' (value expected)");
    lua_close(L);
}

TEST(encode_numbers)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(ENC(L, "1"), "1");
    CHECK_EQ_STR(ENC(L, "5.0"), "5");
    CHECK_EQ_STR(ENC(L, "-3"), "-3");
    CHECK_EQ_STR(ENC(L, "0"), "0");
    CHECK_EQ_STR(ENC(L, "-0.0"), "0");
    CHECK_EQ_STR(ENC(L, "0.1"), "0.1");
    CHECK_EQ_STR(ENC(L, "0.1 + 0.2"), "0.30000000000000004");
    CHECK_EQ_STR(ENC(L, "1/3"), "0.3333333333333333");
    CHECK_EQ_STR(ENC(L, "1.5"), "1.5");
    CHECK_EQ_STR(ENC(L, "-2.5e-7"), "-2.5e-07");
    CHECK_EQ_STR(ENC(L, "1e300"), "1e+300");
    CHECK_EQ_STR(ENC(L, "-1e300"), "-1e+300");
    CHECK_EQ_STR(ENC(L, "5e-324"), "5e-324");
    CHECK_EQ_STR(ENC(L, "1e16"), "1e+16");
    CHECK_EQ_STR(ENC(L, "-1.5e-7"), "-1.5e-07");
    CHECK_EQ_STR(ENC(L, "123456789.123"), "123456789.123");
    CHECK_EQ_STR(ENC(L, "2^53 + 2"), "9007199254740994.0");
    CHECK_EQ_STR(ENC(L, "2^53 - 1"), "9007199254740991");
    CHECK_EQ_STR(ENC(L, "-(2^53 - 1)"), "-9007199254740991");
    CHECK_EQ_STR(ENC(L, "2^53"), "9007199254740992");
    CHECK_EQ_STR(ENC(L, "2^63"), "9.223372036854776e+18");
    CHECK_EQ_STR(ENC(L, "1e21"), "1e+21");
    CHECK_EQ_STR(ENC(L, "123456789.125"), "123456789.125");
    CHECK_EQ_STR(ENC(L, "1e15"), "1000000000000000");
    /* as Python's json.dumps writes them */
    CHECK_EQ_STR(ENC(L, "0/0"), "NaN");
    CHECK_EQ_STR(ENC(L, "-(0/0)"), "NaN");
    CHECK_EQ_STR(ENC(L, "math.huge"), "Infinity");
    CHECK_EQ_STR(ENC(L, "{ a = { -math.huge, 0/0 } }"), "{\"a\":[-Infinity,NaN]}");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty({ math.huge })"), "[\n  Infinity\n]");
    /* Every double round-trips through the shortest form. */
    CHECK_EQ_STR(th_run(L,
        "math.randomseed(7)\n"
        "for i = 1, 20000 do\n"
        "  local x = (math.random() - 0.5) * 10 ^ math.random(-300, 300)\n"
        "  local s = codec.json_encode(x)\n"
        "  if codec.json_decode(s) ~= x then return s end\n"
        "end\n"
        "return 'ok'"), "ok");
    /* Few-decimal values take a shortcut; it must agree with %.14g..%.17g. */
    CHECK_EQ_STR(th_run(L,
        "math.randomseed(11)\n"
        "for i = 1, 50000 do\n"
        "  local x = math.random(-1e9, 1e9) / 10 ^ math.random(0, 9)\n"
        "  local s, want = codec.json_encode(x)\n"
        "  if x == math.floor(x) then want = string.format('%d', x) else\n"
        "    for p = 14, 17 do want = string.format('%.' .. p .. 'g', x) if tonumber(want) == x then break end end\n"
        "  end\n"
        "  if s ~= want then return s .. ' vs ' .. want end\n"
        "end\n"
        "return 'ok'"), "ok");
    CHECK_EQ_STR(ENC(L, "{ 0.0001, 0.00012, 1e-5, 12.5, -0.75, 99999999999999.5, 1234.56 }"),
                 "[0.0001,0.00012,1e-05,12.5,-0.75,99999999999999.5,1234.56]");
    lua_close(L);
}

/* json.dumps of these doubles in Python 3.11 (repr: the shortest digits
 * that read back, the nearest if several), except that integral values
 * up to 2^53 have no ".0" here. Made by a short Python script over powers of two and
 * their neighbours, powers of ten, random bit patterns and subnormals. */
static const struct { uint64_t bits; const char *json; } python_doubles[] = {
    { 0x0000000000000001ull, "5e-324" },
    { 0x0000000000000002ull, "1e-323" },
    { 0x0010000000000000ull, "2.2250738585072014e-308" },
    { 0x000fffffffffffffull, "2.225073858507201e-308" },
    { 0x7fefffffffffffffull, "1.7976931348623157e+308" },
    { 0x3fb999999999999aull, "0.1" },
    { 0x3fd3333333333334ull, "0.30000000000000004" },
    { 0x3fd5555555555555ull, "0.3333333333333333" },
    { 0x3fe5555555555555ull, "0.6666666666666666" },
    { 0x444b1ae4d6e2ef50ull, "1e+21" },
    { 0x4480f0cf064dd592ull, "1e+22" },
    { 0x44b52d02c7e14af6ull, "1e+23" },
    { 0x3ea0c6f7a0b5ed8dull, "5e-07" },
    { 0x3e8421f5f40d8376ull, "1.5e-07" },
    { 0xbe90c6f7a0b5ed8dull, "-2.5e-07" },
    { 0x4341c37937e08000ull, "1e+16" },
    { 0xc341c37937e08000ull, "-1e+16" },
    { 0x430c6bf526340002ull, "1000000000000000.2" },
    { 0x419d6f34547df3b6ull, "123456789.123" },
    { 0x4340000000000000ull, "9007199254740992" },
    { 0xc340000000000001ull, "-9007199254740994.0" },
    { 0x4341c37937e07fffull, "9999999999999998.0" },
    { 0x3f1a36e2eb1c432dull, "0.0001" },
    { 0x3ee4f8b588e368f1ull, "1e-05" },
    { 0x3f1a36e2eb1c432cull, "9.999999999999999e-05" },
    { 0x40934a3d70a3d70aull, "1234.56" },
    { 0x42d6bcc41e8fffe0ull, "99999999999999.5" },
    { 0x44dfe185ca57c517ull, "6.02214076e+23" },
    { 0xbc07a4da290c1653ull, "-1.602176634e-19" },
    { 0x43e0000000000000ull, "9.223372036854776e+18" },
    { 0x43f0000000000000ull, "1.8446744073709552e+19" },
    { 0x000730d67819e8d2ull, "1e-308" },
    { 0x0000000000002264ull, "4.35e-320" },
    { 0x437b69b4ba630f35ull, "1.2345678901234568e+17" },
    { 0x3fe9999999999999ull, "0.7999999999999999" },
    { 0xc040aaaaaaaaaaabull, "-33.333333333333336" },
    { 0x54b249ad2594c37dull, "1e+100" },
    { 0x000000000000003dull, "3e-322" },
    { 0x7feffffffffffffeull, "1.7976931348623155e+308" },
    { 0x00a0000000000000ull, "1.1392378155556871e-305" },
    { 0x009fffffffffffffull, "1.139237815555687e-305" },
    { 0x00a0000000000001ull, "1.1392378155556874e-305" },
    { 0x0470000000000000ull, "2.626903552830961e-287" },
    { 0x046fffffffffffffull, "2.6269035528309605e-287" },
    { 0x0470000000000001ull, "2.6269035528309614e-287" },
    { 0x0840000000000000ull, "6.057227193173887e-269" },
    { 0x083fffffffffffffull, "6.057227193173886e-269" },
    { 0x0840000000000001ull, "6.057227193173888e-269" },
    { 0x0c10000000000000ull, "1.3967014978599092e-250" },
    { 0x0c0fffffffffffffull, "1.396701497859909e-250" },
    { 0x0c10000000000001ull, "1.3967014978599095e-250" },
    { 0x0fe0000000000000ull, "3.220574384798567e-232" },
    { 0x0fdfffffffffffffull, "3.2205743847985663e-232" },
    { 0x0fe0000000000001ull, "3.2205743847985674e-232" },
    { 0x13b0000000000000ull, "7.426138930840468e-214" },
    { 0x13afffffffffffffull, "7.426138930840467e-214" },
    { 0x13b0000000000001ull, "7.42613893084047e-214" },
    { 0x1780000000000000ull, "1.712351053912815e-195" },
    { 0x177fffffffffffffull, "1.7123510539128147e-195" },
    { 0x1780000000000001ull, "1.7123510539128153e-195" },
    { 0x1b50000000000000ull, "3.9484127069845653e-177" },
    { 0x1b4fffffffffffffull, "3.948412706984565e-177" },
    { 0x1b50000000000001ull, "3.948412706984566e-177" },
    { 0x1f20000000000000ull, "9.104419837890877e-159" },
    { 0x1f1fffffffffffffull, "9.104419837890876e-159" },
    { 0x1f20000000000001ull, "9.10441983789088e-159" },
    { 0x22f0000000000000ull, "2.0993362836147152e-140" },
    { 0x22efffffffffffffull, "2.099336283614715e-140" },
    { 0x22f0000000000001ull, "2.0993362836147157e-140" },
    { 0x26c0000000000000ull, "4.840739893561648e-122" },
    { 0x26bfffffffffffffull, "4.8407398935616473e-122" },
    { 0x26c0000000000001ull, "4.840739893561649e-122" },
    { 0x2a90000000000000ull, "1.1161986242990967e-103" },
    { 0x2a8fffffffffffffull, "1.1161986242990965e-103" },
    { 0x2a90000000000001ull, "1.116198624299097e-103" },
    { 0x2e60000000000000ull, "2.5737787947340145e-85" },
    { 0x2e5fffffffffffffull, "2.5737787947340142e-85" },
    { 0x2e60000000000001ull, "2.573778794734015e-85" },
    { 0x3230000000000000ull, "5.934729841099874e-67" },
    { 0x322fffffffffffffull, "5.9347298410998736e-67" },
    { 0x3230000000000001ull, "5.934729841099876e-67" },
    { 0x3600000000000000ull, "1.3684555315672042e-48" },
    { 0x35ffffffffffffffull, "1.368455531567204e-48" },
    { 0x3600000000000001ull, "1.3684555315672045e-48" },
    { 0x39d0000000000000ull, "3.1554436208840472e-30" },
    { 0x39cfffffffffffffull, "3.155443620884047e-30" },
    { 0x39d0000000000001ull, "3.155443620884048e-30" },
    { 0x3da0000000000000ull, "7.275957614183426e-12" },
    { 0x3d9fffffffffffffull, "7.275957614183425e-12" },
    { 0x3da0000000000001ull, "7.275957614183428e-12" },
    { 0x4170000000000000ull, "16777216" },
    { 0x416fffffffffffffull, "16777215.999999998" },
    { 0x4170000000000001ull, "16777216.000000004" },
    { 0x4540000000000000ull, "3.8685626227668134e+25" },
    { 0x453fffffffffffffull, "3.868562622766813e+25" },
    { 0x4540000000000001ull, "3.868562622766814e+25" },
    { 0x4910000000000000ull, "8.92029807941225e+43" },
    { 0x490fffffffffffffull, "8.920298079412248e+43" },
    { 0x4910000000000001ull, "8.920298079412251e+43" },
    { 0x4ce0000000000000ull, "2.0568806966515076e+62" },
    { 0x4cdfffffffffffffull, "2.0568806966515073e+62" },
    { 0x4ce0000000000001ull, "2.056880696651508e+62" },
    { 0x50b0000000000000ull, "4.7428439751604714e+80" },
    { 0x50afffffffffffffull, "4.742843975160471e+80" },
    { 0x50b0000000000001ull, "4.742843975160472e+80" },
    { 0x5480000000000000ull, "1.093625362391506e+99" },
    { 0x547fffffffffffffull, "1.0936253623915058e+99" },
    { 0x5480000000000001ull, "1.0936253623915062e+99" },
    { 0x5850000000000000ull, "2.5217283965692467e+117" },
    { 0x584fffffffffffffull, "2.5217283965692464e+117" },
    { 0x5850000000000001ull, "2.521728396569247e+117" },
    { 0x5c20000000000000ull, "5.814709794364855e+135" },
    { 0x5c1fffffffffffffull, "5.8147097943648545e+135" },
    { 0x5c20000000000001ull, "5.814709794364856e+135" },
    { 0x5ff0000000000000ull, "1.3407807929942597e+154" },
    { 0x5fefffffffffffffull, "1.3407807929942596e+154" },
    { 0x5ff0000000000001ull, "1.34078079299426e+154" },
    { 0x63c0000000000000ull, "3.091630018413807e+172" },
    { 0x63bfffffffffffffull, "3.0916300184138063e+172" },
    { 0x63c0000000000001ull, "3.0916300184138074e+172" },
    { 0x6790000000000000ull, "7.12881346503468e+190" },
    { 0x678fffffffffffffull, "7.128813465034679e+190" },
    { 0x6790000000000001ull, "7.128813465034682e+190" },
    { 0x6b60000000000000ull, "1.6437924692338667e+209" },
    { 0x6b5fffffffffffffull, "1.6437924692338665e+209" },
    { 0x6b60000000000001ull, "1.643792469233867e+209" },
    { 0x6f30000000000000ull, "3.790327373781028e+227" },
    { 0x6f2fffffffffffffull, "3.7903273737810273e+227" },
    { 0x6f30000000000001ull, "3.7903273737810285e+227" },
    { 0x7300000000000000ull, "8.739899877464283e+245" },
    { 0x72ffffffffffffffull, "8.739899877464282e+245" },
    { 0x7300000000000001ull, "8.739899877464285e+245" },
    { 0x76d0000000000000ull, "2.0152837033678636e+264" },
    { 0x76cfffffffffffffull, "2.0152837033678634e+264" },
    { 0x76d0000000000001ull, "2.015283703367864e+264" },
    { 0x7aa0000000000000ull, "4.646927838993072e+282" },
    { 0x7a9fffffffffffffull, "4.6469278389930716e+282" },
    { 0x7aa0000000000001ull, "4.646927838993073e+282" },
    { 0x7e70000000000000ull, "1.0715086071862673e+301" },
    { 0x7e6fffffffffffffull, "1.0715086071862672e+301" },
    { 0x7e70000000000001ull, "1.0715086071862676e+301" },
    { 0x02e46ff9c24cb2f3ull, "1e-294" },
    { 0x08e9cbae7fe805b3ull, "1e-265" },
    { 0x0ef047824f2bb6daull, "1e-236" },
    { 0x14f48c22ca71a1bdull, "1e-207" },
    { 0x1af9ef3993b72ab8ull, "1e-178" },
    { 0x21005df0a267bcc9ull, "1e-149" },
    { 0x2704a8729fc3ddb7ull, "1e-120" },
    { 0x2d0a12f5a0f4e3e5ull, "1e-91" },
    { 0x3310747ddddf22a8ull, "1e-62" },
    { 0x3914c4e977ba1f5cull, "1e-33" },
    { 0x45208b2a2c280291ull, "1e+25" },
    { 0x4b24e1878814c9ceull, "1e+54" },
    { 0x512a5b01b605557bull, "1e+83" },
    { 0x5730a1f5b8132466ull, "1e+112" },
    { 0x5d34fe4d06de5057ull, "1e+141" },
    { 0x633a7f5245e5a2cfull, "1e+170" },
    { 0x6940b8e0acac4eafull, "1e+199" },
    { 0x6f451b3a2a6b9c76ull, "1e+228" },
    { 0x754aa3d4df50af0bull, "1e+257" },
    { 0x7b50cfeb353a97dbull, "1e+286" },
    { 0xaf69a7f23a096533ull, "-2.7047105039273383e-80" },
    { 0x18b80bd3205738d1ull, "1.3492394155122858e-189" },
    { 0x1184126915ceb3a1ull, "2.7113280634011025e-224" },
    { 0x7fe371aecfaf0010ull, "1.0923274290346907e+308" },
    { 0x5228beb66694f229ull, "6.153124460166565e+87" },
    { 0xbe6330f47589ca4aull, "-3.5746451747336365e-08" },
    { 0x3f5b97c163f65da8ull, "0.0016841305331122079" },
    { 0xea4e8560e5b80638ull, "-1.1961509237227159e+204" },
    { 0x3e17bd6816edc5d4ull, "1.3818422757744249e-09" },
    { 0x828f1338c24f6aa8ull, "-2.375782081177297e-296" },
    { 0xb42e5457852a5fbaull, "-2.4158809057492353e-57" },
    { 0xf4a0d53ce6edaf80ull, "-6.170592507119755e+253" },
    { 0x8e8ebc27b9db434bull, "-1.4749809067781362e-238" },
    { 0x7eecd3c618dff393ull, "2.4710909887709663e+303" },
    { 0xcf61a9e062e917d3ull, "-2.496707574270967e+74" },
    { 0x549682511b941f43ull, "3.07705850987051e+99" },
    { 0x1e0172b356a3e957ull, "3.7873831590038355e-164" },
    { 0x73a259277f61701eull, "1.0263164545271887e+249" },
    { 0x6779698094df943cull, "2.830597667894848e+190" },
    { 0x083d64039b51c632ull, "5.563313322768277e-269" },
    { 0x59d53ad57d1944ffull, "5.613639711703299e+124" },
    { 0xf917fafe25f0f212ull, "-2.0756456353215372e+275" },
    { 0xcacc8440ba9be85aull, "-2.133866297889e+52" },
    { 0xc756438f492091f2ull, "-4.6240321836092384e+35" },
    { 0xf064cf9fdae3df9cull, "-2.584760413243002e+233" },
    { 0x14432a94228dc519ull, "4.554616843337107e-211" },
    { 0xd857dc0f88249188ull, "-3.760466318931551e+117" },
    { 0xadb32cf5b3bfcd5dull, "-1.5061588967487514e-88" },
    { 0x4fdec39a80ed5503ull, "5.565994791973736e+76" },
    { 0x9338704c4f0cf267ull, "-4.430784105669106e-216" },
    { 0x2465ba54875a34f2ull, "2.3914908856258948e-133" },
    { 0x739cbbc2cee11619ull, "8.036076799200164e+248" },
    { 0x1f37aa6a581da689ull, "2.6932791708030034e-158" },
    { 0x2bef00a64bb36ec8ull, "4.535745206686105e-97" },
    { 0x844ec2b3444fc6f9ull, "-6.3128900431426114e-288" },
    { 0xb03f1ce84138cad2ull, "-2.6869641209099682e-76" },
    { 0xda4a6954d595bf23ull, "-8.939236936787083e+126" },
    { 0xd42704852cdd3fbeull, "-2.4582708574028018e+97" },
    { 0x154570b31dc35c7full, "3.3390466105842906e-206" },
    { 0x7c8db07233a9b4bbull, "9.258591734893545e+291" },
    { 0x0ee8eb0b4ccfbbbfull, "7.653305738925694e-237" },
    { 0xe1d485b4cbe20b11ull, "-1.8465602701290104e+163" },
    { 0x6b0f0bf657813f85ull, "4.9838258856389826e+207" },
    { 0x37c1fadf91b23a19ull, "4.127999558688153e-40" },
    { 0xb47e305f23980554ull, "-7.695003963075686e-56" },
    { 0x357fc39b683b4eb1ull, "5.306121187539996e-51" },
    { 0x88f4f4c896a881feull, "-1.624785639883003e-265" },
    { 0x0c2c9efdb7831712ull, "4.996884481556774e-250" },
    { 0x54e4288015d3542dull, "8.818209448175375e+100" },
    { 0xc2ae4f73c3a7db15ull, "-16663296725997.541" },
    { 0x000cec562756064eull, "1.797190709283577e-308" },
    { 0x0008142aefbbf85full, "1.1234926586948747e-308" },
    { 0x000b54b17cfd3fccull, "1.575746304509308e-308" },
    { 0x000fae5f260642c1ull, "2.180730827649868e-308" },
    { 0x000101f09abccb10ull, "1.401209086950636e-309" },
    { 0x00004565308edbdaull, "3.7697657726346e-310" },
    { 0x00023f0ae9a12142ull, "3.123809369529687e-309" },
    { 0x00062e6b573e304full, "8.596190960848614e-309" },
    { 0x00092dc1a88045e0ull, "1.2764603788229757e-308" },
    { 0x000be6681ee966aaull, "1.6549023336866904e-308" },
    { 0x00059f844ca632b1ull, "7.819900362521985e-309" },
    { 0x000f707c534fac56ull, "2.147112423717705e-308" },
    { 0x00000c0b5db51125ull, "6.5428897676124e-311" },
    { 0x000d5ef0a55631ebull, "1.859446866224236e-308" },
    { 0x00035c7e7fbfbf6cull, "4.67447023726042e-309" },
    { 0x000e00bb0f87ce06ull, "1.947336568139637e-308" },
    { 0x000087aa9e04c484ull, "7.3698223643873e-310" },
    { 0x000f714ee2061071ull, "2.147559225784003e-308" },
    { 0x000c2669de7075cdull, "1.6896728223025447e-308" },
    { 0x000fd8eccefa6d8cull, "2.2038471282665e-308" },
    { 0x000947b6d1021adfull, "1.2905613766196243e-308" },
    { 0x0002d8422c066807ull, "3.95612528218278e-309" },
    { 0x000f84955667de8aull, "2.1580301177128074e-308" },
    { 0x0007107b6e58190dull, "9.824234279865775e-309" },
    { 0x0001556b1ef6a975ull, "1.854690547758077e-309" },
};

static double from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static uint64_t to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* codec.json_encode(x) and codec.json_decode(s), called from C; the text
 * lives until the next c_encode. */
static const char *c_encode(lua_State *L, double x)
{
    static char out[64];
    lua_getglobal(L, "codec");
    lua_getfield(L, -1, "json_encode");
    lua_pushnumber(L, x);
    lua_call(L, 1, 1);
    snprintf(out, sizeof out, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return out;
}

static double c_decode(lua_State *L, const char *s)
{
    lua_getglobal(L, "codec");
    lua_getfield(L, -1, "json_decode");
    lua_pushstring(L, s);
    lua_call(L, 1, 1);
    double d = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1.0;
    lua_pop(L, 2);
    return d;
}

TEST(encode_doubles_as_python)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    for (size_t i = 0; i < sizeof python_doubles / sizeof *python_doubles; i++) {
        double x = from_bits(python_doubles[i].bits);
        const char *got = c_encode(L, x);
        CHECK_EQ_STR(got, python_doubles[i].json);
        CHECK(to_bits(c_decode(L, got)) == python_doubles[i].bits);
    }
    lua_close(L);
}

/* What Python's repr would print for x (finite, non-zero, not an integer
 * up to 2^53), found the slow way: the fewest digits p for which printf's
 * p-digit rounding reads back, laid out as repr does. */
static void slow_shortest(double x, char *out, size_t cap)
{
    char sci[48], digits[20];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(sci, sizeof sci, "%.*e", p - 1, x);
        if (strtod(sci, NULL) == x) break;
    }
    int n = 0, i = 0, neg = x < 0;
    for (i = neg; sci[i] != 'e'; i++)
        if (sci[i] >= '0' && sci[i] <= '9') digits[n++] = sci[i];
    int e = atoi(sci + i + 1);
    while (n > 1 && digits[n - 1] == '0') n--;
    size_t len = 0;
    if (neg) out[len++] = '-';
    if (e < -4 || e >= 16) {
        out[len++] = digits[0];
        if (n > 1) {
            out[len++] = '.';
            for (int k = 1; k < n; k++) out[len++] = digits[k];
        }
        snprintf(out + len, cap - len, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        return;
    }
    if (e < 0) {
        out[len++] = '0';
        out[len++] = '.';
        for (int k = -1; k > e; k--) out[len++] = '0';
        for (int k = 0; k < n; k++) out[len++] = digits[k];
    } else {
        for (int k = 0; k <= e; k++) out[len++] = k < n ? digits[k] : '0';
        out[len++] = '.';
        if (n > e + 1) {
            for (int k = e + 1; k < n; k++) out[len++] = digits[k];
        } else {
            out[len++] = '0';
        }
    }
    out[len] = '\0';
}

static uint64_t xorshift_state = 88172645463325252ull;

static uint64_t xorshift64(void)
{
    uint64_t x = xorshift_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return xorshift_state = x;
}

/* Random doubles of every kind: decode(encode(x)) is x, bit for bit, and
 * the text is what the slow search above finds (so never longer than
 * Python's repr). */
TEST(double_round_trip_property)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    int bad = 0;
    for (int i = 0; i < 60000 && bad < 5; i++) {
        uint64_t u = xorshift64();
        switch (i % 6) {
        case 0: u &= 0x800fffffffffffffull; break;                     /* subnormal */
        case 1: u = (u & 0x800fffffffffffffull) | 0x7fe0000000000000ull; break;  /* huge */
        case 2: u = (u & 0x800fffffffffffffull) | 0x0010000000000000ull; break;  /* tiny normal */
        case 3: u = (u & 0x80003fffffffffffull) | 0x4330000000000000ull; break;  /* near 2^52 */
        default: break;                                                  /* anything */
        }
        double x = from_bits(u);
        if (!isfinite(x) || x == 0) continue;
        char want[64];
        const char *got = c_encode(L, x);
        if (x == floor(x) && fabs(x) <= 9007199254740992.0)
            snprintf(want, sizeof want, "%.0f", x);
        else
            slow_shortest(x, want, sizeof want);
        if (to_bits(c_decode(L, got)) != u || strcmp(got, want) != 0) {
            fprintf(stderr, "  %016llx: encoded %s, expected %s\n", (unsigned long long)u, got, want);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    lua_close(L);
}

TEST(encode_numbers_comma_locale)
{
    /* A user script may call os.setlocale; JSON must not follow it. */
    lua_State *L = th_lua_new("codec", qh_codec_open);
    const char *r = th_run(L, "return os.setlocale('de_DE.UTF-8', 'numeric') or os.setlocale('fr_FR.UTF-8', 'numeric') or 'none'");
    if (strcmp(r, "none") != 0) {
        CHECK_EQ_STR(ENC(L, "{ 1.5, 0.25 }"), "[1.5,0.25]");
        CHECK_EQ_STR(th_run(L, "return codec.json_decode('2.5') * 2"), "5");
    }
    th_run(L, "os.setlocale('C', 'numeric')");
    lua_close(L);
}

TEST(encode_strings)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(ENC(L, "'a\"b\\\\c/d'"), "\"a\\\"b\\\\c/d\"");
    CHECK_EQ_STR(ENC(L, "'\\n\\r\\t\\b\\f'"), "\"\\n\\r\\t\\b\\f\"");
    CHECK_EQ_STR(ENC(L, "'\\0\\1\\31\\127'"), "\"\\u0000\\u0001\\u001f\x7f\"");
    CHECK_EQ_STR(ENC(L, "'h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80'"),
                 "\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\"");
    CHECK_EQ_STR(ENC(L, "'\\255'"), "nil|cannot encode string with invalid UTF-8 at value");
    CHECK_EQ_STR(ENC(L, "{ k = 'ok\\192\\128' }"), "nil|cannot encode string with invalid UTF-8 at value.k");
    CHECK_EQ_STR(ENC(L, "{ ['\\255'] = 1 }"), "nil|cannot encode string with invalid UTF-8 at value[\"\xff\"]");
    CHECK_EQ_STR(ENC(L, "'\\237\\160\\128'"), "\"\\ud800\"");     /* surrogate code point */
    /* A high then a low surrogate, each 3 bytes, would come back as one
     * 4-byte character: not encodable (found by tests/fuzz/fuzz_csv). */
    CHECK_EQ_STR(ENC(L, "'\\237\\164\\139\\237\\187\\191'"),
                 "nil|cannot encode string with invalid UTF-8 at value");
    CHECK_EQ_STR(ENC(L, "codec.json_decode('\"\\\\ud90b\"') .. codec.json_decode('\"\\\\udeff\"')"),
                 "nil|cannot encode string with invalid UTF-8 at value");
    CHECK_EQ_STR(ENC(L, "'\\237\\187\\191\\237\\164\\139'"), "\"\\udeff\\ud90b\""); /* low, high: lone */
    CHECK_EQ_STR(ENC(L, "'\\237\\164\\139x\\237\\187\\191'"), "\"\\ud90bx\\udeff\"");
    CHECK_EQ_STR(ENC(L, "'\\244\\144\\128\\128'"), "nil|cannot encode string with invalid UTF-8 at value");
    CHECK_EQ_STR(ENC(L, "'\\224\\128\\128'"), "nil|cannot encode string with invalid UTF-8 at value"); /* overlong */
    CHECK_EQ_STR(ENC(L, "'abc\\226\\156'"), "nil|cannot encode string with invalid UTF-8 at value"); /* truncated */
    /* long strings with escapes scattered through them */
    CHECK_EQ_STR(th_run(L,
        "local s = string.rep('ab\"\\n\xc3\xa9', 100000)\n"
        "local j = codec.json_encode(s)\n"
        "return #j, codec.json_decode(j) == s"), "800002|true");
    lua_close(L);
}

TEST(string_bytes_at_every_offset)
{
    /* Every byte value at every offset of a word-at-a-time scan. */
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(th_run(L,
        "local short = { [8] = 'b', [9] = 't', [10] = 'n', [12] = 'f', [13] = 'r', [34] = '\"', [92] = '\\\\' }\n"
        "for b = 0, 255 do\n"
        "  for pos = 0, 17 do\n"
        "    local s = string.rep('a', pos) .. string.char(b) .. string.rep('z', 17 - pos)\n"
        "    local want, err\n"
        "    if b >= 128 then err = 'cannot encode string with invalid UTF-8 at value'\n"
        "    elseif short[b] then want = '\\\\' .. short[b]\n"
        "    elseif b < 32 then want = string.format('\\\\u%04x', b)\n"
        "    else want = string.char(b) end\n"
        "    local j, e = codec.json_encode(s)\n"
        "    if want then\n"
        "      want = '\"' .. string.rep('a', pos) .. want .. string.rep('z', 17 - pos) .. '\"'\n"
        "      if j ~= want then return 'encode ' .. b .. ' at ' .. pos end\n"
        "      if codec.json_decode(j) ~= s then return 'decode ' .. b .. ' at ' .. pos end\n"
        "    elseif e ~= err then return 'error ' .. b .. ' at ' .. pos .. ': ' .. tostring(e) end\n"
        "    local v, derr = codec.json_decode('\"' .. s .. '\"')\n"
        "    local dwant = (b < 32 and 'control character in string') or (b >= 128 and 'invalid UTF-8 in string')\n"
        "      or (b == 34 and 'unexpected data after the JSON value') or (b == 92 and 'invalid escape')\n"
        "    if dwant then\n"
        "      local at = (b == 34) and pos + 3 or pos + 2\n"
        "      if b == 92 and pos == 17 then at, dwant = 1, 'unterminated string' end\n"
        "      if derr ~= 'invalid JSON at byte ' .. at .. ': ' .. dwant then return 'decode error ' .. b .. ' at ' .. pos .. ': ' .. tostring(derr) end\n"
        "    elseif v ~= s then return 'raw decode ' .. b .. ' at ' .. pos end\n"
        "  end\n"
        "end\n"
        "return 'ok'"), "ok");
    lua_close(L);
}

TEST(encode_tables)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(ENC(L, "{}"), "{}");
    CHECK_EQ_STR(ENC(L, "setmetatable({}, codec.array_mt)"), "[]");
    CHECK_EQ_STR(ENC(L, "{ 1, 2, 'x' }"), "[1,2,\"x\"]");
    CHECK_EQ_STR(ENC(L, "{ b = 1, a = 2, c = { x = true }, B = 0 }"), "{\"B\":0,\"a\":2,\"b\":1,\"c\":{\"x\":true}}");
    CHECK_EQ_STR(ENC(L, "{ {}, { {} }, { a = {} } }"), "[{},[{}],{\"a\":{}}]");
    CHECK_EQ_STR(ENC(L, "{ ab = 1, a = 2, ['a\\0'] = 3, [''] = 4 }"), "{\"\":4,\"a\":2,\"a\\u0000\":3,\"ab\":1}");
    CHECK_EQ_STR(ENC(L, "{ ['\xc3\xa9'] = 1, z = 2 }"), "{\"z\":2,\"\xc3\xa9\":1}");
    CHECK_EQ_STR(ENC(L, "{ 1, 2, a = 3 }"), "nil|cannot encode table with mixed or non-string keys at value");
    CHECK_EQ_STR(ENC(L, "{ x = { [2] = 1 } }"),
                 "nil|cannot encode a list with holes (1 value, keys up to 2; qhost.json.null is JSON's null) "
                 "at value.x");
    CHECK_EQ_STR(ENC(L, "{ [1.5] = 1 }"), "nil|cannot encode table with mixed or non-string keys at value");
    CHECK_EQ_STR(ENC(L, "{ [true] = 1 }"), "nil|cannot encode table with mixed or non-string keys at value");
    CHECK_EQ_STR(ENC(L, "{ 1, nil, 3 }"),
                 "nil|cannot encode a list with holes (2 values, keys up to 3; qhost.json.null is JSON's null) "
                 "at value");
    CHECK_EQ_STR(ENC(L, "setmetatable({ 1, nil, 3 }, codec.array_mt)"), "[1,null,3]");
    CHECK_EQ_STR(ENC(L, "setmetatable({ [100] = 1 }, codec.array_mt)"), "nil|cannot encode array: too sparse at value");
    CHECK_EQ_STR(ENC(L, "setmetatable({ 1, a = 1 }, codec.array_mt)"),
                 "nil|cannot encode array (codec.array_mt) with non-integer keys at value");
    CHECK_EQ_STR(ENC(L, "{ a = { b = function() end } }"), "nil|cannot encode function at value.a.b");
    CHECK_EQ_STR(ENC(L, "{ 1, { x = coroutine.create(print) } }"), "nil|cannot encode thread at value[2].x");
    CHECK_EQ_STR(ENC(L, "{ ['a b'] = { io.stdout } }"), "nil|cannot encode userdata at value[\"a b\"][1]");
    CHECK_EQ_STR(ENC(L, "print"), "nil|cannot encode function at value");
    CHECK_EQ_STR(ENC(L, "{ p = { k = 1 } }"), "{\"p\":{\"k\":1}}");
    /* the same table twice is not a cycle */
    CHECK_EQ_STR(th_run(L, "local t = { 1 } return codec.json_encode({ a = t, b = { t, t } })"),
                 "{\"a\":[1],\"b\":[[1],[1]]}");
    CHECK_EQ_STR(th_run(L, "local t = {} t.x = { y = t } return codec.json_encode({ t })"),
                 "nil|cannot encode a table that contains itself at value[1].x.y");
    CHECK_EQ_STR(th_run(L, "local t = {} t[1] = t return codec.json_encode(t)"),
                 "nil|cannot encode a table that contains itself at value[1]");
    /* 1000 levels are fine, 1001 are not */
    CHECK_EQ_STR(th_run(L,
        "local function nest(n) local t = {} for i = 2, n do t = { t } end return t end\n"
        "local s = codec.json_encode(nest(1000))\n"
        "local ok = s == string.rep('[', 999) .. '{}' .. string.rep(']', 999)\n"
        "local r, err = codec.json_encode(nest(1001))\n"
        "return ok, r, err:sub(1, 59), #err"),
        "true|nil|cannot encode tables nested deeper than 1000 at value[1][1]|511");
    lua_close(L);
}

TEST(encode_key_order_metatable)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(ENC(L, "setmetatable({ a = 1, b = 2, c = 3 }, { __qhost_keys = { 'c', 'x', 'a' } })"),
                 "{\"c\":3,\"a\":1,\"b\":2}");
    CHECK_EQ_STR(ENC(L, "setmetatable({ a = 1, b = 2 }, { __qhost_keys = { 'a', 'a', 5 } })"),
                 "{\"a\":1,\"b\":2}");
    CHECK_EQ_STR(ENC(L, "setmetatable({}, { __qhost_keys = { 'a' } })"), "{}");
    CHECK_EQ_STR(ENC(L, "setmetatable({ 1 }, { __qhost_keys = { 'a' } })"),
                 "nil|cannot encode table with mixed or non-string keys at value");
    /* Many keys: the pointer-sorted lookup path beyond insertion sort. */
    CHECK_EQ_STR(th_run(L,
        "local keys, t, want = {}, {}, {}\n"
        "for i = 40, 1, -1 do keys[#keys + 1] = 'k' .. i; t['k' .. i] = i; want[#want + 1] = '\"k' .. i .. '\":' .. i end\n"
        "t.zz = 0; t.aa = 0\n"
        "local s = codec.json_encode(setmetatable(t, { __qhost_keys = keys }))\n"
        "return s == '{' .. table.concat(want, ',') .. ',\"aa\":0,\"zz\":0}'"), "true");
    lua_close(L);
}

TEST(encode_pretty)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    /* json.dumps({"a": [1, 2], "b": {}, "c": [], "d": {"e": None}}, indent=2) */
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty({ a = { 1, 2 }, b = {}, "
                        "c = setmetatable({}, codec.array_mt), d = { e = codec.null } })"),
                 "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": {\n    \"e\": null\n  }\n}");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty({ 1 }, 4)"), "[\n    1\n]");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty({ 1 }, 0)"), "[\n1\n]");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty({ x = 1 }, '\\t')"), "{\n\t\"x\": 1\n}");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty('s')"), "\"s\"");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty(codec.json_decode('{\"b\":1,\"a\":[]}'))"),
                 "{\n  \"b\": 1,\n  \"a\": []\n}");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty({ f = print })"), "nil|cannot encode function at value.f");
    CHECK_EQ_STR(th_run(L, "return pcall(codec.json_encode_pretty, {}, -1)"),
                 "false|bad argument #2 to '?' (indent must be an integer from 0 to 64 or a string)");
    lua_close(L);
}

TEST(decode_values)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(DEC(L, "'[1,\"a\",true,false,null,{\"x\":1.5},[]]'"), "[1,\"a\",true,false,null,{\"x\":1.5},[]]");
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode(' \\t\\r\\n null \\n') return v == codec.null"), "true");
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode('[null]') return v[1] == codec.null, #v"), "true|1");
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode('{\"a\":{\"b\":[1,2,{\"c\":\"d\"}]}}') return v.a.b[3].c, v.a.b[2]"), "d|2");
    CHECK_EQ_STR(th_run(L, "return getmetatable(codec.json_decode('[]')) == codec.array_mt, "
                        "getmetatable(codec.json_decode('[[1]]')[1]) == codec.array_mt"), "true|true");
    CHECK_EQ_STR(th_run(L, "return codec.json_decode('true'), codec.json_decode('false'), codec.json_decode('\"s\"')"),
                 "true|false|s");
    CHECK_EQ_STR(DEC(L, "'{}'"), "{}");
    CHECK_EQ_STR(DEC(L, "'[]'"), "[]");
    CHECK_EQ_STR(DEC(L, "'[{},[],[[]],{\"a\":{}}]'"), "[{},[],[[]],{\"a\":{}}]");
    CHECK_EQ_STR(th_run(L, "return pcall(codec.json_decode)"),
                 "false|bad argument #1 to '?' (string expected, got no value)");
    lua_close(L);
}

TEST(decode_numbers)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode('-0') return v, 1 / v"), "0|inf");
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode('-0.0') return 1 / v"), "-inf");
    CHECK_EQ_STR(th_run(L, "return codec.json_decode('1e400'), codec.json_decode('-1e400')"), "inf|-inf");
    CHECK_EQ_STR(DEC(L, "'[0,-1,10,0.5,1E2,1e-2,2.5E+3,-1.25e-1,123456789012345,1234567890123456]'"),
                 "[0,-1,10,0.5,100,0.01,2500,-0.125,123456789012345,1234567890123456]");
    CHECK_EQ_STR(DEC(L, "'12345678901234567890'"), "1.2345678901234567e+19");
    CHECK_EQ_STR(DEC(L, "'0.30000000000000004'"), "0.30000000000000004");
    /* Python's json.loads reads these (and json.dumps writes them) */
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode('NaN') return v ~= v, type(v)"), "true|number");
    CHECK_EQ_STR(th_run(L, "return codec.json_decode('Infinity') == math.huge, codec.json_decode(' -Infinity ') == -math.huge"),
                 "true|true");
    CHECK_EQ_STR(DEC(L, "'{\"a\":[NaN,Infinity,-Infinity,-1]}'"), "{\"a\":[NaN,Infinity,-Infinity,-1]}");
    CHECK_EQ_STR(DEC(L, "'9007199254740992'"), "9007199254740992");
    CHECK_EQ_STR(DEC(L, "'1' .. string.rep('0', 80) .. '.5'"), "1e+80");
    CHECK_EQ_STR(DEC(L, "'[0.000123,1.5e-10,7E22,7e23,0e5,-0e0,123456789012345.6]'"),
                 "[0.000123,1.5e-10,7e+22,7e+23,0,0,123456789012345.6]");
    /* the exact fast path and strtod agree with LuaJIT's own reader */
    CHECK_EQ_STR(th_run(L,
        "math.randomseed(3)\n"
        "for i = 1, 50000 do\n"
        "  local s = math.random(0, 1e9) .. '.' .. string.rep('0', math.random(0, 3)) .. math.random(0, 1e6)\n"
        "  if i % 2 == 0 then s = s .. 'e' .. math.random(-30, 30) end\n"
        "  if i % 3 == 0 then s = '-' .. s end\n"
        "  if codec.json_decode(s) ~= tonumber(s) then return s end\n"
        "end\n"
        "return 'ok'"), "ok");
    lua_close(L);
}

/* Integers beyond 2^53 that fit in int64 decode to int64_t cdata, and
 * int64_t/uint64_t cdata encode as plain integers: ids and nanosecond
 * timestamps round-trip exactly. */
TEST(int64_round_trip)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode('123456789012345678') "
                        "return type(v), v == 123456789012345678LL, tostring(v), codec.json_encode(v)"),
                 "cdata|true|123456789012345678LL|123456789012345678");
    CHECK_EQ_STR(th_run(L, "local ffi = require('ffi') local v = codec.json_decode('-9007199254740993') "
                        "return ffi.istype('int64_t', v), v == -9007199254740993LL"), "true|true");
    /* 2^53 itself stays a number; so does anything with '.' or an exponent */
    CHECK_EQ_STR(th_run(L, "return type(codec.json_decode('9007199254740992')), type(codec.json_decode('-9007199254740992')), "
                        "type(codec.json_decode('9007199254740993.0')), type(codec.json_decode('9007199254740993e0'))"),
                 "number|number|number|number");
    CHECK_EQ_STR(DEC(L, "'[9007199254740993,-9007199254740993,9223372036854775807,-9223372036854775808]'"),
                 "[9007199254740993,-9007199254740993,9223372036854775807,-9223372036854775808]");
    /* beyond int64: a double, as before */
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode('9223372036854775808') return type(v), codec.json_encode(v)"),
                 "number|9.223372036854776e+18");
    CHECK_EQ_STR(th_run(L, "local v = codec.json_decode('-9223372036854775809') return type(v), codec.json_encode(v)"),
                 "number|-9.223372036854776e+18");
    CHECK_EQ_STR(DEC(L, "'99999999999999999999999'"), "1e+23");
    /* a big double keeps its ".0", so it reads back as a double */
    CHECK_EQ_STR(th_run(L, "local s = codec.json_encode(2^53 + 2) return s, type(codec.json_decode(s))"),
                 "9007199254740994.0|number");
    /* in objects and arrays, with key order, pretty */
    CHECK_EQ_STR(DEC(L, "'{\"id\":1700000000123456789,\"n\":1,\"a\":[-1700000000123456789]}'"),
                 "{\"id\":1700000000123456789,\"n\":1,\"a\":[-1700000000123456789]}");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_pretty({ 42LL })"), "[\n  42\n]");
    CHECK_EQ_STR(ENC(L, "{ ts = 1700000000123456789LL }"), "{\"ts\":1700000000123456789}");
    /* uint64_t too; any other cdata is an error */
    CHECK_EQ_STR(ENC(L, "{ 18446744073709551615ULL, -5LL, 0ULL }"), "[18446744073709551615,-5,0]");
    CHECK_EQ_STR(th_run(L, "local ffi = require('ffi') return codec.json_encode({ x = ffi.new('int32_t', 5) })"),
                 "nil|cannot encode cdata at value.x");
    CHECK_EQ_STR(th_run(L, "local ffi = require('ffi') return codec.json_encode(ffi.new('double', 1))"),
                 "nil|cannot encode cdata at value");
    CHECK_EQ_STR(th_run(L, "local ffi = require('ffi') return codec.json_encode({ ffi.new('struct { int64_t a; }') })"),
                 "nil|cannot encode cdata at value[1]");
    CHECK_EQ_STR(th_run(L, "local ffi = require('ffi') return codec.json_encode(ffi.cast('void *', 0))"),
                 "nil|cannot encode cdata at value");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode({ [1LL] = 1 })"),
                 "nil|cannot encode table with mixed or non-string keys at value");
    lua_close(L);
}

TEST(decode_strings)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(th_run(L, "return codec.json_decode('\"\\\\\"\\\\\\\\\\\\/\\\\b\\\\f\\\\n\\\\r\\\\t\"') == '\"\\\\/\\b\\f\\n\\r\\t'"),
                 "true");
    CHECK_EQ_STR(th_run(L, "return codec.json_decode('\"\\\\u00e9\\\\u00E9\\\\u20ac\\\\u0041\"')"),
                 "\xc3\xa9\xc3\xa9\xe2\x82\xac" "A");
    CHECK_EQ_STR(th_run(L, "return codec.json_decode('\"\\\\ud83d\\\\ude00\"') == '\\240\\159\\152\\128'"), "true");
    /* lone surrogates: the 3-byte form, and back to the same escape */
    CHECK_EQ_STR(th_run(L, "local s = codec.json_decode('\"\\\\ud800\"') return s == '\\237\\160\\128', codec.json_encode(s)"),
                 "true|\"\\ud800\"");
    CHECK_EQ_STR(th_run(L, "local s = codec.json_decode('\"x\\\\udc00y\"') return s == 'x\\237\\176\\128y', codec.json_encode(s)"),
                 "true|\"x\\udc00y\"");
    CHECK_EQ_STR(th_run(L, "local s = codec.json_decode('\"\\\\ud800\\\\u0041\"') return s == '\\237\\160\\128A'"), "true");
    CHECK_EQ_STR(th_run(L, "local s = codec.json_decode('\"\\\\ud800\\\\ud800\"') return codec.json_encode(s)"),
                 "\"\\ud800\\ud800\"");
    CHECK_EQ_STR(th_run(L, "return codec.json_decode('\"\\\\u0000\"') == '\\0'"), "true");
    CHECK_EQ_STR(th_run(L, "return codec.json_decode('\"h\xc3\xa9llo \xf0\x9f\x98\x80\"')"), "h\xc3\xa9llo \xf0\x9f\x98\x80");
    CHECK_EQ_STR(DEC(L, "'\"a\\\\u0001b\\\\u001F\\\\u007f\"'"), "\"a\\u0001b\\u001f\x7f\"");
    lua_close(L);
}

TEST(decode_key_order)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(DEC(L, "'{\"b\":1,\"a\":2}'"), "{\"b\":1,\"a\":2}");
    CHECK_EQ_STR(DEC(L, "'{\"z\":{\"y\":1,\"x\":2},\"a\":[{\"q\":1,\"p\":2}],\"m\":{}}'"),
                 "{\"z\":{\"y\":1,\"x\":2},\"a\":[{\"q\":1,\"p\":2}],\"m\":{}}");
    CHECK_EQ_STR(DEC(L, "' { \"b\" : 1 , \"a\" : [ 1 , 2 ] } '"), "{\"b\":1,\"a\":[1,2]}");
    /* keys with NULs and escapes keep their place */
    CHECK_EQ_STR(DEC(L, "'{\"a\\\\u0000b\":1,\"a\":2,\"\\\\u00e9\":3,\"\":4}'"),
                 "{\"a\\u0000b\":1,\"a\":2,\"\xc3\xa9\":3,\"\":4}");
    /* added keys come after the original ones (sorted); removed ones vanish */
    CHECK_EQ_STR(th_run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') t.c = 3 t.aa = 4 return codec.json_encode(t)"),
                 "{\"b\":1,\"a\":2,\"aa\":4,\"c\":3}");
    CHECK_EQ_STR(th_run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') t.b = nil return codec.json_encode(t)"),
                 "{\"a\":2}");
    CHECK_EQ_STR(th_run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') t.b = nil t.a = nil return codec.json_encode(t)"),
                 "{}");
    /* duplicate keys: the last value, the first position */
    CHECK_EQ_STR(DEC(L, "'{\"a\":1,\"b\":2,\"a\":3}'"), "{\"a\":3,\"b\":2}");
    /* interned: same key sequence, same metatable; other order, other one */
    CHECK_EQ_STR(th_run(L, "return getmetatable(codec.json_decode('{\"a\":1}')) == getmetatable(codec.json_decode('{\"a\":[2]}')), "
                        "getmetatable(codec.json_decode('{\"a\":1,\"b\":1}')) == getmetatable(codec.json_decode('{\"b\":1,\"a\":1}'))"),
                 "true|false");
    /* keys_of: a copy of the order, as an array */
    CHECK_EQ_STR(th_run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') local k = codec.keys_of(t) "
                        "k[1] = 'zzz' return codec.json_encode(codec.keys_of(t)), codec.json_encode(k), "
                        "codec.keys_of({}), codec.keys_of(setmetatable({}, {}))"),
                 "[\"b\",\"a\"]|[\"zzz\",\"a\"]|nil|nil");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode(codec.keys_of(codec.json_decode('{}')))"), "[]");
    /* exact_keys: the order only while the object has exactly those keys */
    CHECK_EQ_STR(th_run(L, "local t = codec.json_decode('{\"b\":1,\"a\":2}') local k = codec.exact_keys(t) "
                        "local same = k == codec.exact_keys(codec.json_decode('{\"b\":3,\"a\":4}')) "
                        "local r = table.concat(k, ',') t.c = 1 local added = codec.exact_keys(t) "
                        "t.c = nil t.a = nil return r, same, added, codec.exact_keys(t), "
                        "codec.exact_keys({ a = 1 }), #codec.exact_keys(codec.json_decode('{}'))"),
                 "b,a|true|nil|nil|nil|0");
    /* beyond the cache's 4096 sequences objects still keep their order;
     * only like objects in a row share (the last shape at their depth) */
    CHECK_EQ_STR(th_run(L,
        "for i = 1, 5000 do\n"
        "  local j = '{\"k' .. i .. '\":1,\"a\":2}'\n"
        "  if codec.json_encode(codec.json_decode(j)) ~= j then return j end\n"
        "end\n"
        "local j = '{\"k4999\":1,\"a\":2}'\n"
        "local a, b = codec.json_decode(j), codec.json_decode(j)\n"
        "codec.json_decode('{\"k4998\":1,\"a\":2}')\n"
        "local c = codec.json_decode(j)\n"
        "return 'ok', getmetatable(a) == getmetatable(b), getmetatable(b) ~= getmetatable(c)"), "ok|true|true");
    /* the last shape at a depth: its keys are taken while they match, from
     * the first key that differs on as any object (duplicates, escapes,
     * more or fewer keys, nested objects of their own shapes) */
    CHECK_EQ_STR(th_run(L,
        "local cases = {\n"
        "  '{\"a\":1,\"b\":2,\"c\":3}', '{\"a\":1,\"b\":2,\"c\":3}', '{\"a\":1,\"b\":2}',\n"
        "  '{\"a\":1,\"b\":2,\"c\":3,\"d\":4}', '{\"a\":1,\"a\":5,\"b\":2}', '{\"a\":1,\"b\":2,\"b\":7}',\n"
        "  '{\"\\\\u0061\":1,\"b\":{\"x\":1,\"y\":[{\"p\":1},{\"p\":2,\"q\":3}]},\"c\":3}',\n"
        "  '{\"a\":1,\"b\":{\"x\":1,\"y\":[{\"q\":1},{\"p\":2,\"q\":3}]},\"c\":3}',\n"
        "  '{\"b\":1,\"a\":2,\"c\":3}', '{}', '{\"a\":1,\"b\":2,\"c\":3}', '{\"c\":3,\"b\":2,\"a\":1}',\n"
        "}\n"
        "local want = {\n"
        "  '{\"a\":1,\"b\":2,\"c\":3}', '{\"a\":1,\"b\":2,\"c\":3}', '{\"a\":1,\"b\":2}',\n"
        "  '{\"a\":1,\"b\":2,\"c\":3,\"d\":4}', '{\"a\":5,\"b\":2}', '{\"a\":1,\"b\":7}',\n"
        "  '{\"a\":1,\"b\":{\"x\":1,\"y\":[{\"p\":1},{\"p\":2,\"q\":3}]},\"c\":3}',\n"
        "  '{\"a\":1,\"b\":{\"x\":1,\"y\":[{\"q\":1},{\"p\":2,\"q\":3}]},\"c\":3}',\n"
        "  '{\"b\":1,\"a\":2,\"c\":3}', '{}', '{\"a\":1,\"b\":2,\"c\":3}', '{\"c\":3,\"b\":2,\"a\":1}',\n"
        "}\n"
        "for round = 1, 2 do\n"
        "  for i, j in ipairs(cases) do\n"
        "    local got = codec.json_encode(codec.json_decode(j))\n"
        "    if got ~= want[i] then return round .. ': ' .. j .. ' -> ' .. got end\n"
        "  end\n"
        "end\n"
        "local t = codec.json_decode('{\"a\":1,\"b\":2}')\n"
        "local n = 0 for _ in pairs(t) do n = n + 1 end\n"
        "return 'ok', n, table.concat(codec.exact_keys(t), ',')"), "ok|2|a,b");
    lua_close(L);
}

TEST(decode_errors)
{
    static const struct { const char *lua_json, *err; } cases[] = {
        { "''", "invalid JSON at byte 1: unexpected end of input" },
        { "'   '", "invalid JSON at byte 4: unexpected end of input" },
        { "'[1,2'", "invalid JSON at byte 5: unexpected end of input" },
        { "'{\"a\":1 \"b\":2}'", "invalid JSON at byte 8: expected ',' or '}'" },
        { "'{\"a\" 1}'", "invalid JSON at byte 6: expected ':'" },
        { "'{\"a\":1,}'", "invalid JSON at byte 8: expected a string key" },
        { "'{1:2}'", "invalid JSON at byte 2: expected a string key or '}'" },
        { "'{\"a\":}'", "invalid JSON at byte 6: expected a value" },
        { "'[1,]'", "invalid JSON at byte 4: expected a value" },
        { "'[,1]'", "invalid JSON at byte 2: expected a value" },
        { "'[1 2]'", "invalid JSON at byte 4: expected ',' or ']'" },
        { "'01'", "invalid JSON at byte 1: invalid number: leading zero" },
        { "'[-01]'", "invalid JSON at byte 2: invalid number: leading zero" },
        { "'+1'", "invalid JSON at byte 1: expected a value" },
        { "'.5'", "invalid JSON at byte 1: expected a value" },
        { "'1.'", "invalid JSON at byte 3: unexpected end of input" },
        { "'[1.x]'", "invalid JSON at byte 4: invalid number: expected a digit after '.'" },
        { "'[1e+]'", "invalid JSON at byte 5: invalid number: expected a digit in the exponent" },
        { "'-a'", "invalid JSON at byte 2: invalid number: expected a digit" },
        { "'0x10'", "invalid JSON at byte 2: unexpected data after the JSON value" },
        { "'nan'", "invalid JSON at byte 1: invalid literal" },
        { "'NaNa'", "invalid JSON at byte 4: unexpected data after the JSON value" },
        { "'-NaN'", "invalid JSON at byte 2: invalid number: expected a digit" },
        { "'Inf'", "invalid JSON at byte 1: invalid literal" },
        { "'[-Infinit]'", "invalid JSON at byte 2: invalid literal" },
        { "'-infinity'", "invalid JSON at byte 2: invalid number: expected a digit" },
        { "'+Infinity'", "invalid JSON at byte 1: expected a value" },
        { "'nul'", "invalid JSON at byte 1: invalid literal" },
        { "'[tru]'", "invalid JSON at byte 2: invalid literal" },
        { "'True'", "invalid JSON at byte 1: expected a value" },
        { "'\"abc'", "invalid JSON at byte 1: unterminated string" },
        { "'[\"a\\\\'", "invalid JSON at byte 2: unterminated string" },
        { "'\"a\\1\"'", "invalid JSON at byte 3: control character in string" },
        { "'\"a\\n\"'", "invalid JSON at byte 3: control character in string" },
        { "'\"\\\\x\"'", "invalid JSON at byte 2: invalid escape" },
        { "'\"ab\\\\u12\"'", "invalid JSON at byte 4: invalid \\u escape" },
        { "'\"\\\\u12g4\"'", "invalid JSON at byte 2: invalid \\u escape" },
        { "'\"a\\255\"'", "invalid JSON at byte 3: invalid UTF-8 in string" },
        { "'\"\\\\n\\255\"'", "invalid JSON at byte 4: invalid UTF-8 in string" },
        { "'\"\\237\\160\\128\"'", "invalid JSON at byte 2: invalid UTF-8 in string" },
        { "'[1] x'", "invalid JSON at byte 5: unexpected data after the JSON value" },
        { "'{\"a\":1}}'", "invalid JSON at byte 8: unexpected data after the JSON value" },
        { "'[1]\\0'", "invalid JSON at byte 4: unexpected data after the JSON value" },
        { "'\\239\\187\\191[]'", "invalid JSON at byte 1: expected a value" },
        { "string.rep('[', 1001) .. string.rep(']', 1001)", "invalid JSON at byte 1001: nesting deeper than 1000" },
        { "string.rep('{\"a\":', 1001) .. '1' .. string.rep('}', 1001)",
          "invalid JSON at byte 5001: nesting deeper than 1000" },
    };
    lua_State *L = th_lua_new("codec", qh_codec_open);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char chunk[512], want[512];
        snprintf(chunk, sizeof chunk, "return codec.json_decode(%s)", cases[i].lua_json);
        snprintf(want, sizeof want, "nil|%s", cases[i].err);
        CHECK_EQ_STR(th_run(L, chunk), want);
    }
    CHECK_EQ_STR(th_run(L, "local s = string.rep('[', 1000) .. string.rep(']', 1000) "
                        "return codec.json_encode(codec.json_decode(s)) == s"), "true");
    lua_close(L);
}

TEST(pack_unpack)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(th_run(L, "return codec.pack_int(1) == '\\0\\0\\0\\1', codec.pack_int(-1) == '\\255\\255\\255\\255', "
                        "codec.pack_int(258) == '\\0\\0\\1\\2', codec.pack_int(-2147483648) == '\\128\\0\\0\\0'"),
                 "true|true|true|true");
    CHECK_EQ_STR(th_run(L, "return codec.unpack_int(codec.pack_int(2147483647)), codec.unpack_int(codec.pack_int(-2147483648)), "
                        "codec.unpack_int(codec.pack_int(-5)), codec.unpack_int(codec.pack_int(0))"),
                 "2147483647|-2147483648|-5|0");
    CHECK_EQ_STR(th_run(L, "return codec.pack_int(2^31)"),
                 "nil|int value must be an integer from -2147483648 to 2147483647, got 2147483648");
    CHECK_EQ_STR(th_run(L, "return codec.pack_int(1.5)"),
                 "nil|int value must be an integer from -2147483648 to 2147483647, got 1.5");
    CHECK_EQ_STR(th_run(L, "return codec.pack_int(0/0) == nil"), "true");
    CHECK_EQ_STR(th_run(L, "return pcall(codec.pack_int, '1')"),
                 "false|bad argument #1 to '?' (number expected, got string)");
    CHECK_EQ_STR(th_run(L, "return codec.unpack_int('abc')"), "nil|int payload must be 4 bytes, got 3");
    CHECK_EQ_STR(th_run(L, "return codec.unpack_int('abcde')"), "nil|int payload must be 4 bytes, got 5");
    CHECK_EQ_STR(th_run(L, "return codec.pack_double(1.5) == '\\63\\248\\0\\0\\0\\0\\0\\0', "
                        "codec.pack_double(-2) == '\\192\\0\\0\\0\\0\\0\\0\\0'"), "true|true");
    CHECK_EQ_STR(th_run(L, "return codec.unpack_double(codec.pack_double(-0.1)), codec.unpack_double(codec.pack_double(1e300)), "
                        "codec.unpack_double(codec.pack_double(-math.huge)), 1 / codec.unpack_double(codec.pack_double(-0.0))"),
                 "-0.1|1e+300|-inf|-inf");
    CHECK_EQ_STR(th_run(L, "local x = codec.unpack_double(codec.pack_double(0/0)) return x ~= x"), "true");
    CHECK_EQ_STR(th_run(L, "return codec.unpack_double('1234')"), "nil|double payload must be 8 bytes, got 4");
    CHECK_EQ_STR(th_run(L, "return pcall(codec.pack_double, nil)"),
                 "false|bad argument #1 to '?' (number expected, got nil)");
    lua_close(L);
}

TEST(module_shared_between_opens)
{
    /* A second open in the same state shares null, array_mt and the cache. */
    lua_State *L = th_lua_new("codec", qh_codec_open);
    th_lua_global(L, "codec2", qh_codec_open);
    CHECK_EQ_STR(th_run(L, "return codec2.array_mt == codec.array_mt, codec2.null == codec.null, "
                        "codec2.json_encode(codec.json_decode('[]')), "
                        "codec2.json_encode(codec.json_decode('{\"b\":1,\"a\":1}'))"),
                 "true|true|[]|{\"b\":1,\"a\":1}");
    lua_close(L);
}

TEST(reentrant_from_gc)
{
    /* Finalizers run inside the decoder's allocations and encode too. */
    lua_State *L = th_lua_new("codec", qh_codec_open);
    CHECK_EQ_STR(th_run(L,
        "local n, bad = 0, 0\n"
        "for i = 1, 2000 do\n"
        "  local p = newproxy(true)\n"
        "  getmetatable(p).__gc = function()\n"
        "    local s = codec.json_encode(codec.json_decode('{\"x\":[1,2],\"y\":\"z\"}'))\n"
        "    if s == '{\"x\":[1,2],\"y\":\"z\"}' then n = n + 1 else bad = bad + 1 end\n"
        "  end\n"
        "end\n"
        "local big = '[' .. string.rep('{\"a\":\"b\",\"c\":[1]},', 50000) .. '1]'\n"
        "for r = 1, 3 do\n"
        "  local v = codec.json_decode(big)\n"
        "  if codec.json_encode(v) ~= big then return 'mismatch' end\n"
        "end\n"
        "collectgarbage()\n"
        "return n, bad"), "2000|0");
    lua_close(L);
}

/* An allocator that counts scratch-state-sized blocks (the state holds
 * 1002 path frames: no other allocation of these tests comes near 32 KiB)
 * and can fail one allocation on request. */
static long alloc_fail_countdown = -1;  /* fail when it reaches 0; -1: never */
static long big_allocs;

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (nsize > osize && alloc_fail_countdown >= 0 && alloc_fail_countdown-- == 0) return NULL;
    if (nsize >= 32768 && !ptr) big_allocs++;
    return realloc(ptr, nsize);
}

static int l_fail_alloc_after(lua_State *L)
{
    alloc_fail_countdown = (long)luaL_checknumber(L, 1);
    return 0;
}

static int l_big_allocs(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)big_allocs);
    return 1;
}

/* A Lua error can leave a codec call at any allocation: an error thrown by
 * a __gc finalizer, or out of memory. The next calls must work and share one
 * scratch state again (not make one per call, and keep sharing key-order
 * metatables). */
TEST(scratch_state_after_error)
{
    lua_State *L = lua_newstate(test_alloc, NULL);
    CHECK(L != NULL);
    if (!L) return;
    luaL_openlibs(L);
    th_lua_global(L, "codec", qh_codec_open);
    lua_register(L, "fail_alloc_after", l_fail_alloc_after);
    lua_register(L, "big_allocs", l_big_allocs);
    CHECK_EQ_STR(th_run(L,
        "big = '[' .. string.rep('{\"a\":\"b\",\"c\":[1]},', 20000) .. '1]'\n"
        "big_value = codec.json_decode(big)\n"
        "function shared_again(what)\n"
        "  local before = big_allocs()\n"
        "  for i = 1, 100 do\n"
        "    local a, b = codec.json_decode('{\"q\":1}'), codec.json_decode('{\"q\":[2]}')\n"
        "    if getmetatable(a) ~= getmetatable(b) then return what .. ': key order not shared' end\n"
        "    if codec.json_encode(a) ~= '{\"q\":1}' then return what .. ': bad encode' end\n"
        "  end\n"
        "  local made = big_allocs() - before\n"
        "  if made > 1 then return what .. ': ' .. made .. ' scratch states for 300 calls' end\n"
        "end\n"
        /* a finalizer that throws, and a collector eager enough to run it
         * inside the next big call */
        "function gc_bomb()\n"
        "  collectgarbage('setpause', 10)\n"
        "  collectgarbage('setstepmul', 1000)\n"
        "  collectgarbage()\n"
        "  local p = newproxy(true)\n"
        "  getmetatable(p).__gc = function() error('boom from __gc', 0) end\n"
        "end\n"
        "function gc_calm() collectgarbage('setpause', 200) collectgarbage('setstepmul', 200) end\n"
        "return 'ok'"), "ok");
    CHECK_EQ_STR(th_run(L, "gc_bomb() local ok, err = pcall(codec.json_decode, big) gc_calm() return ok, err"), "false|boom from __gc");
    CHECK_EQ_STR(th_run(L, "return shared_again('after a __gc error in decode') or 'ok'"), "ok");
    CHECK_EQ_STR(th_run(L, "fail_alloc_after(200) local ok, err = pcall(codec.json_decode, big) "
                        "fail_alloc_after(-1) return ok, err"), "false|not enough memory");
    CHECK_EQ_STR(th_run(L, "return shared_again('after running out of memory in decode') or 'ok'"), "ok");
    /* the encoder's only Lua allocation is its result (a new string: the
     * text of big_value itself would be found interned) */
    CHECK_EQ_STR(th_run(L, "big_value[#big_value + 1] = 2 fail_alloc_after(0) local ok, err = pcall(codec.json_encode, big_value) "
                        "fail_alloc_after(-1) return ok, err"), "false|not enough memory");
    CHECK_EQ_STR(th_run(L, "return shared_again('after running out of memory in encode') or 'ok'"), "ok");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode(codec.json_decode(big)) == big"), "true");
    lua_close(L);
}

TEST(escape_function_for_c)
{
    qh_buf b = { 0 };
    CHECK_EQ_INT(qh_json_append_string(&b, "a\"\n\x01\xc3\xa9", 6), QH_JSON_OK);
    CHECK_EQ_INT(qh_json_append_string(&b, "x\xff", 2), QH_JSON_EUTF8);
    CHECK_EQ_INT(qh_json_append_string(&b, "", 0), QH_JSON_OK);
    CHECK_EQ_INT((long long)b.len, 17);
    CHECK(b.len == 17 && memcmp(b.data, "\"a\\\"\\n\\u0001\xc3\xa9\"\"\"", 17) == 0);
    qh_buf_free(&b);
    qh_buf_free(&b);
    qh_buf_free(NULL);
}

/* qh_ffi_json_string into memory of exactly QH_JSON_STRING_ROOM bytes
 * (malloc'd, so that AddressSanitizer sees a write past it): the worst
 * cases of escaping fit, and the text is qh_json_append_string's. */
TEST(escape_function_for_ffi)
{
    static const struct { const char *s; size_t len; } cases[] = {
        { "", 0 },
        { "plain", 5 },
        { "\x01\x01\x01\x01\x01\x01\x01\x01", 8 },   /* each byte 6 */
        { "\x1f", 1 },
        { "a\"\\\n\x01\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 15 },
        { "\xed\xa0\x80\xed\xa0\x80", 6 },                   /* lone surrogates: 3 bytes to 6 */
        { "x\x01\xed\xbf\xbf", 5 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t room = QH_JSON_STRING_ROOM(cases[i].len);
        char *out = malloc(room);
        CHECK(out != NULL);
        ptrdiff_t n = qh_ffi_json_string(out, cases[i].s, cases[i].len);
        qh_buf want = { 0 };
        CHECK_EQ_INT(qh_json_append_string(&want, cases[i].s, cases[i].len), QH_JSON_OK);
        CHECK_EQ_INT((long long)n, (long long)want.len);
        CHECK(n >= 0 && memcmp(out, want.data, (size_t)n) == 0);
        qh_buf_free(&want);
        free(out);
    }
    char *out = malloc(QH_JSON_STRING_ROOM(3));
    CHECK(out != NULL);
    CHECK_EQ_INT((long long)qh_ffi_json_string(out, "a\xff", 2), -1);
    CHECK_EQ_INT((long long)qh_ffi_json_string(out, "\xed\xa0\x80", 2), -1);
    free(out);
}

/* A copy of the n bytes of s in memory of exactly n bytes (ASan sees a
 * read past them). */
static char *exact_copy(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (p) memcpy(p, s, n);
    return p;
}

/* The readers qhost.runtime.json_in calls through the FFI: what they take,
 * where they stop, and nothing past the end they are given. */
TEST(readers_for_ffi)
{
    static const struct { const char *s; int want; } strings[] = {
        { "abc\"", 3 }, { "\"", 0 }, { "a b/c\",", 5 }, { "\xc3\xa9\"", 2 }, { "\xf0\x9f\x98\x80\"x", 4 },
        { "a\\nb\"", -1 }, { "a\x01\"", -1 }, { "a\xff\"", -1 }, { "\xed\xa0\x80\"", -1 }, { "abc", -1 },
        { "\xc3", -1 }, { "", -1 },
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        size_t n = strlen(strings[i].s);
        char *p = exact_copy(strings[i].s, n);
        CHECK(p != NULL);
        CHECK_EQ_INT(qh_ffi_json_plain_string(p, p + n), strings[i].want);
        free(p);
    }
    static const struct { const char *s; int want; double d; } numbers[] = {
        { "12", 2, 12 }, { "-1.5e3,", -6, -1500 }, { "0.1}", 3, 0.1 }, { "-0", -2, 0 }, { "1e400", -5, HUGE_VAL },
        { "12345678901234567890", -20, 12345678901234567890.0 }, { "9007199254740993", 0, 0 }, { "01", 0, 0 },
        { "-", 0, 0 }, { "1.", 0, 0 }, { "x", 0, 0 }, { "", 0, 0 },
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        size_t n = strlen(numbers[i].s);
        char *p = exact_copy(numbers[i].s, n);
        CHECK(p != NULL);
        double d = -42;
        CHECK_EQ_INT(qh_ffi_json_number_read(p, p + n, &d), numbers[i].want);
        if (numbers[i].want != 0) CHECK(d == numbers[i].d);
        free(p);
    }
}

/* qh_ffi_json_number_read's sign: a token it calls written back (a positive
 * length) is what qh_json_number_format writes for its value, byte for
 * byte (qhost.runtime.json_out then copies it from the input). */
static int written_back(const char *token, int *wrong)
{
    size_t n = strlen(token);
    double d;
    int32_t len = qh_ffi_json_number_read(token, token + n, &d);
    CHECK(len != 0);
    if (len < 0) return 0;
    char out[QH_JSON_NUMBER_MAX];
    size_t w = qh_json_number_format(out, d);
    if (w != n || memcmp(out, token, n) != 0) {
        if (++*wrong <= 5) fprintf(stderr, "  %s is written %.*s\n", token, (int)w, out);
    }
    return 1;
}

TEST(number_tokens_that_are_written_back_as_they_are)
{
    int wrong = 0;
    static const char *back[] = { "0", "7", "-7", "123456789012345", "-123456789012345", "0.1", "-0.5",
        "0.0001", "-0.00012", "1234.56", "19.99", "0.3", "123456789.012345", "99999999999999.9" };
    for (size_t i = 0; i < sizeof back / sizeof back[0]; i++) CHECK(written_back(back[i], &wrong));
    static const char *not_back[] = { "-0", "1234567890123456", "1.50", "5.0", "-0.0", "0.00001", "1e3", "1E3",
        "1.5e2", "0.1234567890123456", "1234567890.123456" };
    for (size_t i = 0; i < sizeof not_back / sizeof not_back[0]; i++) CHECK(!written_back(not_back[i], &wrong));
    /* random integers and decimals of every length and scale */
    uint64_t r = 42;
    int taken = 0;
    char token[64];
    for (int i = 0; i < 300000; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int digits = 1 + (int)((r >> 33) % 17), point = (int)((r >> 40) % 19) - 1;
        uint64_t m = (r >> 11) % 10000000000000000000ull;
        char d[24];
        snprintf(d, sizeof d, "%019llu", (unsigned long long)m);
        const char *ds = d + 19 - digits;
        size_t t = 0;
        if (r & 1) token[t++] = '-';
        if (point < 0 || point >= digits) {   /* an integer, without leading zeros */
            while (ds[0] == '0' && ds[1]) ds++;
            t += (size_t)snprintf(token + t, sizeof token - t, "%s", ds);
        } else {                               /* point digits before the '.', at least one */
            int ip = point ? point : 1;
            const char *ipart = point ? ds : "0";
            while (ip > 1 && ipart[0] == '0') { ipart++; ip--; }
            t += (size_t)snprintf(token + t, sizeof token - t, "%.*s.%s", ip, ipart, ds + point);
        }
        taken += written_back(token, &wrong);
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(taken > 100000);   /* most are: the test compares many */
}

/* Counts in *wrong an integer qh_json_number_format does not write as
 * printf does, and says what it wrote for the first five. */
static void check_integer_as_printf(int64_t i, int *wrong)
{
    char want[32], out[QH_JSON_NUMBER_MAX];
    snprintf(want, sizeof want, "%lld", (long long)i);
    size_t n = qh_json_number_format(out, (double)i);
    if (n == strlen(want) && memcmp(out, want, n) == 0) return;
    if (*wrong < 5) fprintf(stderr, "  %lld: wrote %.*s\n", (long long)i, (int)n, out);
    (*wrong)++;
}

/* json_number.h alone: where a token ends, what it is, where it is wrong. */
TEST(number_unit)
{
    static const struct { const char *text; long end; double d; long long i; int is_int64; } ok[] = {
        { "0", 1, 0, 0, 0 },
        { "-0", 2, 0, 0, 0 },
        { "12345,", 5, 12345, 0, 0 },
        { "21.75]", 5, 21.75, 0, 0 },
        { "-1.5e3}", 6, -1500, 0, 0 },
        { "9007199254740993", 16, 0, 9007199254740993LL, 1 },
        { "-9223372036854775808", 20, 0, INT64_MIN, 1 },
        { "9223372036854775808", 19, 9223372036854775808.0, 0, 0 },
        { "0.1000000000000000055511151231257827", 36, 0.1, 0, 0 },
        { "1e400", 5, HUGE_VAL, 0, 0 },
    };
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++) {
        const unsigned char *p = (const unsigned char *)ok[k].text, *end = p + strlen(ok[k].text);
        const unsigned char *at = NULL;
        const char *what = NULL;
        qh_json_number n;
        const unsigned char *stop = qh_json_number_read(p, end, &n, &at, &what);
        CHECK(stop != NULL);
        if (!stop) continue;
        CHECK_EQ_INT(stop - p, ok[k].end);
        CHECK_EQ_INT(n.is_int64, ok[k].is_int64);
        if (n.is_int64) CHECK_EQ_INT(n.i, ok[k].i);
        else CHECK(n.d == ok[k].d && signbit(n.d) == signbit(ok[k].d));
    }
    static const struct { const char *text; long at; const char *what; } bad[] = {
        { "-", 1, "unexpected end of input" },
        { "-x", 1, "invalid number: expected a digit" },
        { "01", 0, "invalid number: leading zero" },
        { "1.", 2, "unexpected end of input" },
        { "1.e5", 2, "invalid number: expected a digit after '.'" },
        { "1e+", 3, "unexpected end of input" },
        { "1ex", 2, "invalid number: expected a digit in the exponent" },
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        const unsigned char *p = (const unsigned char *)bad[k].text, *end = p + strlen(bad[k].text);
        const unsigned char *at = NULL;
        const char *what = NULL;
        qh_json_number n;
        CHECK(qh_json_number_read(p, end, &n, &at, &what) == NULL);
        CHECK_EQ_INT(at - p, bad[k].at);
        CHECK_EQ_STR(what, bad[k].what);
    }
    char out[QH_JSON_NUMBER_MAX];
    /* Integers as printf writes them: every one up to 100,000 either side,
     * 2^53 either side, and each power of ten, one below and one above it. */
    int wrong = 0;
    for (int64_t i = -100000; i <= 100000; i++) check_integer_as_printf(i, &wrong);
    check_integer_as_printf(9007199254740992LL, &wrong);
    check_integer_as_printf(-9007199254740992LL, &wrong);
    for (int64_t p10 = 1; p10 <= 1000000000000000LL; p10 *= 10) {
        int64_t around[] = { p10 - 1, p10, p10 + 1, -p10 + 1, -p10, -p10 - 1 };
        for (size_t k = 0; k < sizeof around / sizeof *around; k++) check_integer_as_printf(around[k], &wrong);
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(qh_json_number_format(out, 1234.56), 7);
    CHECK(memcmp(out, "1234.56", 7) == 0);
    qh_json_number_format(out, -0.0);
    CHECK(out[0] == '0');
    CHECK_EQ_INT(qh_json_number_format(out, 5e-324), 6);
    CHECK(memcmp(out, "5e-324", 6) == 0);
}

/* json_decode.h and json_encode.h without the module: the Lua-side
 * constants at plain stack indices, the scratch the caller's own. */
TEST(decoder_and_encoder_units_alone)
{
    lua_State *L = th_lua_new(NULL, NULL);
    CHECK_EQ_INT(luaL_dostring(L, "local ffi = require('ffi')\n"
                                  "return {}, '__keys', "
                                  "function(hi, lo) return ffi.new('int64_t', hi) * 4294967296 + lo end, "
                                  "function(v) return (tostring(v):match('^(-?%d+)U?LL$')) end, {}"), 0);
    /* 1 array_mt, 2 keys field, 3 int64 make, 4 int64 digits, 5 key cache */
    char err[256] = "";
    qh_json_dec_scratch ds = { 0 };
    qh_json_dec d = { .L = L, .s = &ds, .array_mt = 1, .keys_field = 2, .int64_make = 3,
                      .key_cache = 5, .err = err, .errlen = sizeof err };
    static const char text[] = " {\"b\":[1,\"x\",null],\"a\":9007199254740993} ";
    CHECK_EQ_INT(qh_json_decode(&d, text, sizeof text - 1), 0);
    CHECK_EQ_INT(lua_gettop(L), 6);
    qh_json_enc_scratch *es = calloc(1, sizeof *es);
    qh_json_enc e = { .L = L, .s = es, .array_mt = 1, .keys_field = 2, .int64_digits = 4,
                      .err = err, .errlen = sizeof err };
    CHECK_EQ_INT(qh_json_encode(&e, 6), 0);
    CHECK(es->out.len == 39 && memcmp(es->out.data, "{\"b\":[1,\"x\",null],\"a\":9007199254740993}", 39) == 0);
    /* one entry in the cache, counted in its [1] */
    lua_rawgeti(L, 5, 1);
    CHECK_EQ_INT(lua_tointeger(L, -1), 1);
    lua_settop(L, 5);
    CHECK_EQ_INT(qh_json_decode(&d, "[1,]", 4), -1);
    CHECK_EQ_STR(err, "invalid JSON at byte 4: expected a value");
    lua_settop(L, 5);
    lua_pushcfunction(L, l_fail_alloc_after);  /* any function: not JSON */
    es->out.len = 0;
    CHECK_EQ_INT(qh_json_encode(&e, 6), -1);
    CHECK_EQ_STR(err, "cannot encode function at value");
    qh_json_dec_scratch_free(&ds);
    qh_json_dec_scratch_free(NULL);
    qh_json_enc_scratch_free(es);
    qh_json_enc_scratch_free(NULL);
    free(es);
    lua_close(L);
}

/* The run loop's json_decode_at (the internal qhost.runtime.json_at)
 * reads JSON text in place from librdkafka's buffer: same values, same key
 * order, same errors, and the values are qhost.codec's (shared array_mt and
 * key-order cache). It reads any address, so qhost.codec does not have it. */
TEST(decode_at)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    th_lua_global(L, "json_at", qh_codec_open_json_at);
    static const char obj[] = "{\"b\":1,\"a\":[\"x\",null],\"c\":\"\\u00e9\"}";
    char doc[64], chunk[256];
    snprintf(doc, sizeof doc, "%s trailing", obj);
    /* the object only: the bytes after it are not read */
    snprintf(chunk, sizeof chunk, "return codec.json_encode(json_at.json_decode_at(%.0f, %zu))",
             (double)(uintptr_t)doc, sizeof obj - 1);
    CHECK_EQ_STR(th_run(L, chunk), "{\"b\":1,\"a\":[\"x\",null],\"c\":\"\xc3\xa9\"}");
    snprintf(chunk, sizeof chunk, "return getmetatable(json_at.json_decode_at(%.0f, %zu)) == "
             "getmetatable(codec.json_decode('{\"b\":2,\"a\":3,\"c\":4}'))",
             (double)(uintptr_t)doc, sizeof obj - 1);
    CHECK_EQ_STR(th_run(L, chunk), "true");
    snprintf(chunk, sizeof chunk, "return json_at.json_decode_at(%.0f, %zu)", (double)(uintptr_t)doc,
             sizeof obj + 3);
    CHECK_EQ_STR(th_run(L, chunk), "nil|invalid JSON at byte 37: unexpected data after the JSON value");
    CHECK_EQ_STR(th_run(L, "return json_at.json_decode_at(0, 0)"),
                 "nil|invalid JSON at byte 1: unexpected end of input");
    CHECK_EQ_STR(th_run(L, "return pcall(json_at.json_decode_at, 'x', 1)"),
                 "false|bad argument #1 to '?' (number expected, got string)");
    CHECK_EQ_STR(th_run(L, "return codec.json_decode_at, codec.json_object_from_arrays"), "nil|nil");
    lua_close(L);
}

/* The run loop's json_encode_out (internal qhost.runtime.json_at) leaves
 * the text in a buffer of its own, read by address: the same text as
 * json_encode, the same errors, untouched by the public encoder (a __gc
 * finalizer may encode between it and the produce), and a big text's
 * buffer given back at the next call. */
TEST(encode_out)
{
    lua_State *L = th_lua_new("codec", qh_codec_open);
    th_lua_global(L, "json_at", qh_codec_open_json_at);
    CHECK_EQ_STR(th_run(L,
        "local ffi = require('ffi')\n"
        "local function text(a, n) return ffi.string(ffi.cast('const char *', a), n) end\n"
        "local v = codec.json_decode('{\"z\":1,\"a\":[true,null,\"\\\\u00e9\"],\"m\":{\"k\":2.5}}')\n"
        "v.b = 'new'\n"
        "local a, n = json_at.json_encode_out(v)\n"
        "assert(type(a) == 'number' and n == #codec.json_encode(v))\n"
        "local before = text(a, n)\n"
        "codec.json_encode({ other = string.rep('x', 5000) })\n"
        "return before == codec.json_encode(v), text(a, n) == before, before"),
        "true|true|{\"z\":1,\"a\":[true,null,\"\xc3\xa9\"],\"m\":{\"k\":2.5},\"b\":\"new\"}");
    CHECK_EQ_STR(th_run(L,
        "local ffi = require('ffi')\n"
        "local big = { s = string.rep('y', 3 * 1024 * 1024) }\n"
        "local a, n = json_at.json_encode_out(big)\n"
        "local ok1 = ffi.string(ffi.cast('const char *', a), n) == codec.json_encode(big)\n"
        "a, n = json_at.json_encode_out({ 1, 2 })\n"
        "return ok1, ffi.string(ffi.cast('const char *', a), n)"),
        "true|[1,2]");
    CHECK_EQ_STR(th_run(L, "return json_at.json_encode_out({ f = print })"),
                 "nil|cannot encode function at value.f");
    CHECK_EQ_STR(th_run(L, "return pcall(json_at.json_encode_out)"),
                 "false|bad argument #1 to '?' (value expected)");
    CHECK_EQ_STR(th_run(L, "return codec.json_encode_out"), "nil");
    lua_close(L);
}

int main(void)
{
    RUN(encode_scalars);
    RUN(encode_numbers);
    RUN(encode_doubles_as_python);
    RUN(double_round_trip_property);
    RUN(encode_numbers_comma_locale);
    RUN(encode_strings);
    RUN(string_bytes_at_every_offset);
    RUN(encode_tables);
    RUN(encode_key_order_metatable);
    RUN(encode_pretty);
    RUN(decode_values);
    RUN(decode_numbers);
    RUN(int64_round_trip);
    RUN(decode_strings);
    RUN(decode_key_order);
    RUN(decode_errors);
    RUN(pack_unpack);
    RUN(module_shared_between_opens);
    RUN(reentrant_from_gc);
    RUN(scratch_state_after_error);
    RUN(escape_function_for_c);
    RUN(escape_function_for_ffi);
    RUN(readers_for_ffi);
    RUN(number_tokens_that_are_written_back_as_they_are);
    RUN(number_unit);
    RUN(decoder_and_encoder_units_alone);
    RUN(decode_at);
    RUN(encode_out);
    return check_summary();
}
