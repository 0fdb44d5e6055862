from tests.support import make_chat


async def test_chat(config_path, database_url):
    chat = await make_chat(config_path, database_url)
    try:
        await chat.say("/discuss now")
        assert chat.platform.rounds()
        out = await chat.say("hello", who="bob")
        assert "Saved" in out
        out = await chat.say("/discuss answer --anonymous 1 shh", who="bob")
        await chat.say("/discuss now")
        assert len(chat.platform.rounds()) == 2
        assert chat.platform.summaries()[0].respondents == 2
    finally:
        await chat.store.close()
